-- examples/progress_lookup.py: PROGRESS now, a keep-alive, the verdict later.
--
-- miltertest 1.5.0 reads exactly one reply per step and takes a progress packet ('p') for the
-- answer, so this script can only check that the keep-alive comes first; the verdicts that
-- follow are checked against Postfix in tests/integration.
dofile(LIBDIR .. "/lib.lua")

run("progress_lookup", function()
    local conn = open_milter()
    ok(mt.rcptto(conn, "<alice@example.com>"), "rcpt alice")
    expect_reply(conn, string.byte("p"), "first reply to a late recipient check")
    mt.disconnect(conn, false)
end)
