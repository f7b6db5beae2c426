// Callback handlers. With callbackWaitsForEmptyEventLoop (the default) the answer waits for
// the event loop to empty (the timer below); with it false, it goes at once.
let timerFired = 0;

exports.handler = (event, context, callback) => {
  if (event.noWait) context.callbackWaitsForEmptyEventLoop = false;
  const t0 = Date.now();
  setTimeout(() => {
    timerFired += 1;
  }, event.timerMs ?? 0);
  if (event.fail) {
    callback(new Error("callback failure"));
    return;
  }
  callback(null, { via: "callback", timerFiredBefore: timerFired, t0 });
};

exports.legacy = (event, context) => {
  context.succeed({ via: "context.succeed" });
};
