-- Helpers shared by the miltertest scripts in this directory.
--
-- miltertest ends a script that raises an error with exit status 1 but prints nothing, so every
-- check here prints "FAIL: <why>" first.  The pytest runner (test_miltertest.py) passes the
-- milter's socket as SOCKET and this directory as LIBDIR (miltertest -D NAME=VALUE).

function fail(why)
    mt.echo("FAIL: " .. why)
    os.exit(1)
end

function check(condition, why)
    if not condition then
        fail(why)
    end
end

-- A protocol step returns nil on success or an error text.
function ok(err, what)
    if err ~= nil then
        fail(what .. ": " .. tostring(err))
    end
end

-- mt.getreply() returns the reply command byte as a number.
local names = {}
for _, name in ipairs({"SMFIR_CONTINUE", "SMFIR_ACCEPT", "SMFIR_REJECT", "SMFIR_TEMPFAIL",
                       "SMFIR_DISCARD", "SMFIR_REPLYCODE", "SMFIR_SKIP"}) do
    if _G[name] ~= nil then
        names[_G[name]] = name
    end
end

function reply_name(reply)
    return names[reply] or string.format("%q", string.char(reply))
end

function expect_reply(conn, expected, what)
    local reply = mt.getreply(conn)
    check(reply == expected, what .. ": reply " .. reply_name(reply) .. ", expected " ..
          reply_name(expected))
end

-- Whether the reply text sent at end-of-message is exactly ``text``.  MT_SMTPREPLY joins its
-- three arguments with spaces and compares the result with the whole reply, multi-line replies
-- included, so any split of the text at its first two spaces will do.
function reply_is(conn, text)
    local code, esc, rest = string.match(text, "^(%S+) (%S+) (.*)$")
    return mt.eom_check(conn, MT_SMTPREPLY, code, esc, rest)
end

function open_milter()
    -- retry for up to 5 s: the runner starts the milter just before
    local conn = mt.connect(SOCKET, 50, 0.1)
    check(conn ~= nil, "cannot connect to " .. tostring(SOCKET))
    return conn
end

-- Send the connection information unless the milter asked not to get it (SMFIP_NOCONNECT);
-- miltertest refuses steps a milter negotiated away.
function connect_client(conn)
    if not mt.test_option(conn, SMFIP_NOCONNECT) then
        ok(mt.conninfo(conn, "client.example.net", "192.0.2.10"), "conninfo")
        expect_reply(conn, SMFIR_CONTINUE, "conninfo")
    end
end

-- Run the script's body; a Lua error (miltertest raises one for a call out of sequence) is
-- printed instead of vanishing.
function run(name, body)
    local done, err = pcall(body)
    if not done then
        fail(tostring(err))
    end
    mt.echo("PASS " .. name)
end
