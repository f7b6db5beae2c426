// A Node.js function: `lambdad invoke hello-node --payload '{"name": "Ada"}'`.
let invocations = 0;

exports.handler = async (event, context) => {
  invocations += 1;
  console.log("greeting", event.name ?? "world");
  return {
    message: `Hello, ${event.name ?? "world"}!`,
    invocations,
    requestId: context.awsRequestId,
    remainingMs: context.getRemainingTimeInMillis(),
  };
};
