class CustomError extends Error {
  constructor(message) {
    super(message);
    this.name = "CustomError";
  }
}

exports.throws = async () => {
  throw new CustomError("something broke");
};
exports.rejectsString = () => Promise.reject("plain string");
exports.syncThrow = () => {
  throw new TypeError("bad type");
};
exports.unmarshalable = async () => {
  const a = {};
  a.self = a;
  return a;
};
exports.uncaught = (event, context, callback) => {
  setTimeout(() => {
    throw new RangeError("from a timer");
  }, 1);
};
exports.notAFunction = 42;
