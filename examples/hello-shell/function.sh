# A `provided` function: the AWS tutorial's bash + curl bootstrap runs this handler.
# `lambdad invoke hello-shell --payload '{"name": "Ada"}'`
function handler () {
  EVENT_DATA=$1
  echo "got $EVENT_DATA" 1>&2
  echo "{\"message\": \"Hello from bash\", \"event\": $EVENT_DATA}"
}
