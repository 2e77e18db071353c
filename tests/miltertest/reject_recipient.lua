-- examples/reject_recipient.py: one closed mailbox is refused, the others pass.
dofile(LIBDIR .. "/lib.lua")

run("reject_recipient", function()
    local conn = open_milter()
    check(mt.test_option(conn, SMFIP_NOMAIL), "MAIL is not needed and should be skipped")
    -- miltertest fills in the steps before RCPT itself, skipping those negotiated away
    ok(mt.rcptto(conn, "<bob@example.com>"), "rcpt bob")
    expect_reply(conn, SMFIR_CONTINUE, "rcpt bob")
    ok(mt.rcptto(conn, "<closed@example.com>"), "rcpt closed")
    expect_reply(conn, SMFIR_REPLYCODE, "rcpt closed")
    ok(mt.rcptto(conn, "<carol@example.com>"), "rcpt carol")
    expect_reply(conn, SMFIR_CONTINUE, "rcpt carol")
    ok(mt.eom(conn), "eom")
    expect_reply(conn, SMFIR_CONTINUE, "eom")
    -- a refused recipient is refused at RCPT, not deleted afterwards
    check(not mt.eom_check(conn, MT_RCPTDELETE, "<closed@example.com>"), "deleted at eom")
    mt.disconnect(conn)
end)
