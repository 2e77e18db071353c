"""A filter on pymilter's low-level ``milter`` module (no Milter package): callbacks registered
one by one, as the C extension's users write them. Argument: the socket spec."""

import sys

import milter


def envfrom(ctx: "milter.milterContext", sender: bytes, *params: bytes) -> int:
    ctx.setpriv({"from": sender.decode(), "params": [p.decode() for p in params]})
    return int(milter.CONTINUE)


def envrcpt(ctx: "milter.milterContext", rcpt: bytes, *params: bytes) -> int:
    if rcpt.startswith(b"<crash"):
        raise ValueError("a bug in the filter")
    return int(milter.CONTINUE)


def eom(ctx: "milter.milterContext") -> int:
    seen = ctx.getpriv()
    ctx.addheader("X-Low-Level", f"{seen['from']} {' '.join(seen['params'])}".strip())
    ctx.addheader("X-Macro", str(ctx.getsymval("{mail_addr}")))
    return int(milter.ACCEPT)


def negotiate(ctx: "milter.milterContext", opts: list[int]) -> int:
    ctx.setsymlist(milter.M_ENVFROM, "{mail_addr}")
    opts[1] = opts[1] & milter.P_SKIP | milter.P_NOHELO | milter.P_NOHDRS | milter.P_NOBODY
    return int(milter.CONTINUE)


if __name__ == "__main__":
    milter.set_envfrom_callback(envfrom)
    milter.set_envrcpt_callback(envrcpt)
    milter.set_eom_callback(eom)
    milter.setconn(sys.argv[1])
    milter.register("lowlevel", negotiate=negotiate)
    milter.opensocket(True)
    milter.main()
