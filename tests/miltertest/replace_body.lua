-- examples/replace_body.py: the body, gathered from its chunks, comes back with a footer.
--
-- Kept under 1 KiB: miltertest 1.5.0 (Debian 12) overflows a stack buffer on a body
-- replacement of about 1000 bytes or more ("stack smashing detected").  Larger replacements,
-- beyond 64 KiB, are checked against Postfix in tests/integration.
dofile(LIBDIR .. "/lib.lua")

run("replace_body", function()
    local footer = "\r\n-- \r\nThis message was checked by milterkit.\r\n"
    local conn = open_milter()
    check(mt.test_action(conn, SMFIF_CHGBODY), "CHGBODY not requested")
    check(not mt.test_option(conn, SMFIP_NOBODY), "the filter must get the body")

    ok(mt.bodystring(conn, "Hello,\r\n"), "body 1")
    expect_reply(conn, SMFIR_CONTINUE, "body 1")
    ok(mt.bodystring(conn, "a body in two chunks.\r\n"), "body 2")
    expect_reply(conn, SMFIR_CONTINUE, "body 2")
    ok(mt.eom(conn), "eom")
    expect_reply(conn, SMFIR_CONTINUE, "eom")
    check(mt.eom_check(conn, MT_BODYCHANGE, "Hello,\r\na body in two chunks.\r\n" .. footer),
          "body not replaced by body + footer")
    mt.disconnect(conn)
end)
