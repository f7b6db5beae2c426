function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA" 1>&2;
  RESPONSE="{\"echo\": $EVENT_DATA, \"uid\": $(id -u), \"pid1\": \"$(cat /proc/1/comm)\"}"

  echo $RESPONSE
}
