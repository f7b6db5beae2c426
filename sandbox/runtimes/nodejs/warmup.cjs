// Imported once at pool time by runtime.mjs: the first import() of a CommonJS file sets up
// the module loader, which would otherwise be part of the first cold start.
module.exports.handler = async (event) => event;
