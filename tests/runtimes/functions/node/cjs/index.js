// CommonJS, async handler: module state persists between warm invocations.
let count = 0;
console.log("cold start of", process.env.AWS_LAMBDA_FUNCTION_NAME);

exports.handler = async (event, context) => {
  count += 1;
  console.log("event:", event);
  console.warn("two\nlines");
  return {
    count,
    event,
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memoryLimitInMB: context.memoryLimitInMB,
    invokedFunctionArn: context.invokedFunctionArn,
    logGroupName: context.logGroupName,
    remaining: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop,
    traceId: process.env._X_AMZN_TRACE_ID,
    env: {
      runtimeApi: process.env.AWS_LAMBDA_RUNTIME_API,
      execEnv: process.env.AWS_EXECUTION_ENV,
      taskRoot: process.env.LAMBDA_TASK_ROOT,
      handler: process.env._HANDLER,
      mine: process.env.MY_SETTING,
    },
    uid: process.getuid(),
    cwd: process.cwd(),
    version: process.version,
  };
};

exports.nested = { deeper: { handler: async () => "nested ok" } };
