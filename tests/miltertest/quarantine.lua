-- examples/quarantine.py: "[quarantine]" in the Subject holds the message, with a reason.
dofile(LIBDIR .. "/lib.lua")

local function message(subject)
    local conn = open_milter()
    check(mt.test_action(conn, SMFIF_QUARANTINE), "QUARANTINE not requested")
    ok(mt.header(conn, "From", "alice@example.net"), "header From")
    expect_reply(conn, SMFIR_CONTINUE, "header From")
    ok(mt.header(conn, "Subject", subject), "header Subject")
    expect_reply(conn, SMFIR_CONTINUE, "header Subject")
    ok(mt.eom(conn), "eom")
    expect_reply(conn, SMFIR_CONTINUE, "eom")
    return conn
end

run("quarantine", function()
    local conn = message("Please [QUARANTINE] this")
    check(mt.eom_check(conn, MT_QUARANTINE, "subject asks for quarantine"), "not quarantined")
    mt.disconnect(conn)
    -- a new connection: miltertest keeps the actions of every message of a connection
    conn = message("an ordinary message")
    check(not mt.eom_check(conn, MT_QUARANTINE), "an ordinary message was quarantined")
    mt.disconnect(conn)
end)
