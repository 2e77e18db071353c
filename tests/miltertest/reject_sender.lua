-- examples/reject_sender.py: a blocked sender domain gets a (multi-line) 550 at MAIL.
dofile(LIBDIR .. "/lib.lua")

run("reject_sender", function()
    local conn = open_milter()
    check(not mt.test_option(conn, SMFIP_NOMAIL), "the filter must get MAIL")
    connect_client(conn)

    ok(mt.mailfrom(conn, "<anyone@spam.example>"), "mailfrom spam.example")
    expect_reply(conn, SMFIR_REPLYCODE, "mailfrom spam.example")
    ok(mt.abort(conn), "abort")

    ok(mt.mailfrom(conn, "<Someone@JUNK.example>"), "mailfrom JUNK.example")
    expect_reply(conn, SMFIR_REPLYCODE, "domains are compared case-insensitively")
    ok(mt.abort(conn), "abort")

    ok(mt.mailfrom(conn, "<alice@example.net>"), "mailfrom example.net")
    expect_reply(conn, SMFIR_CONTINUE, "mailfrom example.net")
    ok(mt.eom(conn), "eom")
    expect_reply(conn, SMFIR_CONTINUE, "eom")
    mt.disconnect(conn)
end)
