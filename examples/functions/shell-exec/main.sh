#!/bin/sh
# A mini-faas command function speaking the `exec` protocol, in POSIX sh.
#
# The watchdog runs this once per invocation: the event arrives on stdin (then stdin is
# closed), stdout is the result, and a non-zero exit is a function error whose message is
# the end of stderr. stderr lines are also kept in the container's log with the request id.
#
# Event: {"name": "Ada"} (optional). Result: {"message":"Hello, Ada!","runtime":"sh","bytes":N}.

event=$(cat)
echo "read ${#event} bytes of event" >&2

# A JSON parser is more than this example needs: take "name": "..." if it is there.
name=$(printf '%s' "$event" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
if [ -z "$name" ]; then
    name=world
fi

printf '{"message":"Hello, %s!","runtime":"sh","bytes":%d}' "$name" "${#event}"
