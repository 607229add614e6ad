# MCP over Streamable HTTP with curl and jq, for shell scripts: sourced by
# bench/agent_bench.sh, and written so that scripts/quickstart (POSIX sh)
# can source it too. The caller sets
#
#   MCP_URL       the endpoint, e.g. http://127.0.0.1:7441/mcp
#   MCP_KEY       the API key (sent as Authorization: Bearer)
#   MCP_TMP       a scratch directory: headers and body of the last POST
#   MCP_CURL      optional command prefix for curl, word-split (a network
#                 namespace: MCP_CURL=in_node, or "nsenter --net=...")
#   MCP_CLIENT    optional clientInfo.name (default ink-script)
#   MCP_PROGRESS  optional; non-empty: tools/call asks for progress and
#                 prints the notifications on stderr as they arrive
#   MCP_MAX_TIME  optional curl --max-time per request (default 900)
#
# and may define mcp_fail WHAT MESSAGE (it must not return) before or after
# sourcing; the default prints the message and exits 1. mcp_initialize sets
# MCP_SESSION and MCP_PROTOCOL: call it in the shell itself, not in $(...).
#
#   mcp_initialize || echo "key refused"
#   result=$(mcp_tool 2 create_app '{"name": "web", "image": "...", "port": 80}')
#   mcp_close
#
# A response comes as application/json, or as text/event-stream when the
# request runs for a while (progress notifications, then the response), each
# message on a "data:" line: mcp_response picks the one with the request's id.

if ! command -v mcp_fail >/dev/null 2>&1; then
	mcp_fail() {
		echo "MCP $1 failed: $2" >&2
		exit 1
	}
fi

MCP_SESSION=
MCP_PROTOCOL=

# mcp_post MESSAGE: POSTs one JSON-RPC message; headers to $MCP_TMP/headers,
# body to $MCP_TMP/body; prints the HTTP status (nothing when curl failed).
mcp_post() {
	: >"$MCP_TMP/headers"
	: >"$MCP_TMP/body"
	if [ -z "${MCP_PROGRESS:-}" ]; then
		${MCP_CURL:-} curl -sS --max-time "${MCP_MAX_TIME:-900}" -D "$MCP_TMP/headers" \
			-o "$MCP_TMP/body" -X POST "$MCP_URL" \
			-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
			-H "Authorization: Bearer $MCP_KEY" ${MCP_SESSION:+-H "Mcp-Session-Id: $MCP_SESSION"} \
			${MCP_PROTOCOL:+-H "MCP-Protocol-Version: $MCP_PROTOCOL"} -d "$1" || true
	else
		${MCP_CURL:-} curl -sS -N --max-time "${MCP_MAX_TIME:-900}" -D "$MCP_TMP/headers" \
			-o - -X POST "$MCP_URL" \
			-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
			-H "Authorization: Bearer $MCP_KEY" ${MCP_SESSION:+-H "Mcp-Session-Id: $MCP_SESSION"} \
			${MCP_PROTOCOL:+-H "MCP-Protocol-Version: $MCP_PROTOCOL"} -d "$1" |
			while IFS= read -r line || [ -n "$line" ]; do
				printf '%s\n' "$line" >>"$MCP_TMP/body"
				case $line in
				data:*'"notifications/progress"'*)
					printf '%s\n' "${line#data:}" |
						jq -r '"  ... " + (.params.message // "\(.params.progress)")' >&2 2>/dev/null || true
					;;
				esac
			done
	fi
	sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$MCP_TMP/headers"
}

# mcp_response ID: the JSON-RPC response with that id in $MCP_TMP/body.
mcp_response() {
	if tr -d '\r' <"$MCP_TMP/headers" | grep -qi '^content-type: *text/event-stream'; then
		tr -d '\r' <"$MCP_TMP/body" | sed -n 's/^data: \{0,1\}//p'
	else
		cat "$MCP_TMP/body"
	fi | jq -c --argjson id "$1" 'select(.id == $id and (has("result") or has("error")))'
}

# mcp_header NAME: a header of the last response (the last one of that name).
mcp_header() { tr -d '\r' <"$MCP_TMP/headers" | sed -n "s/^$1: *//Ip" | tail -n 1; }

# mcp_initialize: opens a session with $MCP_KEY (initialize, then
# notifications/initialized); returns 1 when the key is refused (401).
mcp_initialize() {
	MCP_SESSION=
	MCP_PROTOCOL=
	_mcp_status=$(mcp_post "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"${MCP_CLIENT:-ink-script}\",\"version\":\"1\"}}}")
	[ "$_mcp_status" != 401 ] || return 1
	[ "$_mcp_status" = 200 ] || mcp_fail initialize "HTTP ${_mcp_status:-error}: $(cat "$MCP_TMP/body")"
	MCP_SESSION=$(mcp_header Mcp-Session-Id)
	MCP_PROTOCOL=$(mcp_response 1 | jq -r '.result.protocolVersion // empty')
	if [ -z "$MCP_SESSION" ] || [ -z "$MCP_PROTOCOL" ]; then
		mcp_fail initialize "no session: $(cat "$MCP_TMP/headers" "$MCP_TMP/body")"
	fi
	_mcp_status=$(mcp_post '{"jsonrpc":"2.0","method":"notifications/initialized"}')
	[ "$_mcp_status" = 202 ] || mcp_fail notifications/initialized "HTTP ${_mcp_status:-error}: $(cat "$MCP_TMP/body")"
}

# mcp_request ID METHOD [PARAMS_JSON]: the whole JSON-RPC response (a
# result or an error) to one request.
mcp_request() {
	_mcp_status=$(mcp_post "$(jq -nc --argjson id "$1" --arg m "$2" --argjson p "${3:-null}" \
		'{jsonrpc: "2.0", id: $id, method: $m} + (if $p == null then {} else {params: $p} end)')") ||
		exit 1
	[ "$_mcp_status" = 200 ] || mcp_fail "$2" "HTTP ${_mcp_status:-error}: $(cat "$MCP_TMP/body")"
	_mcp_res=$(mcp_response "$1") || exit 1
	[ -n "$_mcp_res" ] || mcp_fail "$2" "no response with id $1 in: $(cat "$MCP_TMP/body")"
	printf '%s\n' "$_mcp_res"
}

# mcp_tool ID TOOL ARGUMENTS_JSON: the call's result (isError ones too); a
# JSON-RPC error fails.
mcp_tool() {
	_mcp_res=$(mcp_request "$1" tools/call "$(jq -nc --argjson id "$1" --arg tool "$2" \
		--argjson args "$3" --arg progress "${MCP_PROGRESS:-}" \
		'{name: $tool, arguments: $args} +
		 (if $progress == "" then {} else {_meta: {progressToken: "ink-\($id)"}} end)')") ||
		exit 1
	if [ "$(printf '%s' "$_mcp_res" | jq 'has("error")')" = true ]; then
		mcp_fail "$2" "$(printf '%s' "$_mcp_res" | jq -c .error)"
	fi
	printf '%s' "$_mcp_res" | jq -c .result
}

# mcp_close: ends the session (DELETE).
mcp_close() {
	[ -n "$MCP_SESSION" ] || return 0
	${MCP_CURL:-} curl -s -o /dev/null --max-time 10 -X DELETE "$MCP_URL" \
		-H "Authorization: Bearer $MCP_KEY" -H "Mcp-Session-Id: $MCP_SESSION" || true
	MCP_SESSION=
	MCP_PROTOCOL=
}
