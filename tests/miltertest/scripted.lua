-- tests/integration/filters/scripted.py: header and envelope changes, a reply at
-- end-of-message, and a handler that raises -- each message on its own connection, because
-- miltertest collects the actions of a whole connection.
dofile(LIBDIR .. "/lib.lua")

-- One message whose X-Do: headers tell the filter what to do; returns the connection.
local function message(actions, body)
    local conn = open_milter()
    connect_client(conn)
    ok(mt.mailfrom(conn, "<alice@example.net>"), "mailfrom")
    expect_reply(conn, SMFIR_CONTINUE, "mailfrom")
    ok(mt.rcptto(conn, "<bob@example.org>"), "rcpt")
    expect_reply(conn, SMFIR_CONTINUE, "rcpt")
    for _, header in ipairs({{"Subject", "original"}, {"X-Delete-Me", "soon gone"}}) do
        ok(mt.header(conn, header[1], header[2]), "header " .. header[1])
        expect_reply(conn, SMFIR_CONTINUE, "header " .. header[1])
    end
    for _, action in ipairs(actions) do
        ok(mt.header(conn, "X-Do", action), "header X-Do")
        expect_reply(conn, SMFIR_CONTINUE, "header X-Do")
    end
    ok(mt.eoh(conn), "eoh")
    expect_reply(conn, SMFIR_CONTINUE, "eoh")
    ok(mt.bodystring(conn, body or "Hello.\r\n"), "body")
    expect_reply(conn, SMFIR_CONTINUE, "body")
    ok(mt.eom(conn), "eom")
    return conn
end

run("scripted", function()
    local conn = message({
        '["change_header", "Subject", 1, "changed"]',
        '["delete_header", "X-Delete-Me", 1]',
        '["insert_header", 0, "X-Inserted", "at the top"]',
        '["add_header", "X-Added", "at the end"]',
    })
    expect_reply(conn, SMFIR_CONTINUE, "eom with header changes")
    check(mt.eom_check(conn, MT_HDRCHANGE, "Subject", "changed"), "Subject not changed")
    check(mt.eom_check(conn, MT_HDRDELETE, "X-Delete-Me"), "X-Delete-Me not deleted")
    check(mt.eom_check(conn, MT_HDRINSERT, "X-Inserted", "at the top", 0), "X-Inserted not at 0")
    check(mt.eom_check(conn, MT_HDRADD, "X-Added", "at the end"), "X-Added not added")
    check(not mt.eom_check(conn, MT_BODYCHANGE), "body changed")
    mt.disconnect(conn)

    conn = message({
        '["add_recipient", "<carol@example.org>"]',
        '["delete_recipient", "<bob@example.org>"]',
        '["quarantine", "a reason"]',
    })
    expect_reply(conn, SMFIR_CONTINUE, "eom with envelope changes")
    check(mt.eom_check(conn, MT_RCPTADD, "<carol@example.org>"), "carol not added")
    check(mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"), "bob not deleted")
    check(mt.eom_check(conn, MT_QUARANTINE, "a reason"), "not quarantined")
    mt.disconnect(conn)

    conn = message({}, "reject-at-end-of-message\r\n")
    expect_reply(conn, SMFIR_REPLYCODE, "eom with a reject")
    check(reply_is(conn, "550-5.7.1 reject at end-of-message\r\n" ..
                         "550-5.7.1 second line of the reply\r\n" ..
                         "550 5.7.1 third line"), "not the three-line 550 reply")
    mt.disconnect(conn)

    conn = message({'["add_header", "X-Lost", "dropped with the failure"]', '["raise"]'})
    -- the default exception policy: a temporary failure with its own reply, no changes
    expect_reply(conn, SMFIR_REPLYCODE, "eom with a handler that raises")
    check(reply_is(conn, "451 4.3.0 Temporary failure in the mail filter"), "not the 451 reply")
    check(not mt.eom_check(conn, MT_HDRADD, "X-Lost"), "a change survived the exception")
    mt.disconnect(conn)
end)
