exports.handler = async () => { return {
