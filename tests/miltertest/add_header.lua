-- examples/add_header.py: X-Milterkit: yes on every message; nothing else is asked for.
dofile(LIBDIR .. "/lib.lua")

run("add_header", function()
    local conn = open_milter()
    -- Only end-of-message has a handler, so milterkit asks the MTA to skip every other event.
    for _, option in ipairs({SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT,
                             SMFIP_NOHDRS, SMFIP_NOEOH, SMFIP_NOBODY}) do
        check(mt.test_option(conn, option), "an event the filter does not handle is not skipped")
    end
    check(mt.test_action(conn, SMFIF_ADDHDRS), "ADDHDRS not requested")

    for message = 1, 2 do
        ok(mt.eom(conn), "eom")
        expect_reply(conn, SMFIR_CONTINUE, "eom")
        ok(mt.abort(conn), "abort")
    end
    -- miltertest collects the end-of-message actions of the whole connection: one per message
    check(mt.eom_check(conn, MT_HDRADD, "X-Milterkit", "yes"), "X-Milterkit: yes not added")
    check(mt.getheader(conn, "X-Milterkit", 0) == "yes", "first X-Milterkit")
    check(mt.getheader(conn, "X-Milterkit", 1) == "yes", "second X-Milterkit")
    check(mt.getheader(conn, "X-Milterkit", 2) == nil, "a third X-Milterkit")
    check(not mt.eom_check(conn, MT_BODYCHANGE), "the body was changed")
    mt.disconnect(conn)
end)
