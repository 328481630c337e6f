# The fake agent's actions, one result word per action on one line:
#   tcp:HOST:PORT   connect: ok, EPERM, ECONNREFUSED, ...
#   udp:HOST:PORT   sendto: sent or the errno name
#   icmp:HOST       an ICMP echo request on a raw socket: sent or the errno
#   dns:NAME@HOST   an A query over UDP port 53: the first address or the errno
#   sh:CMD          runs CMD with /bin/sh -c, prints its output
#   exec:ARGV...    replaces this process (argv joined by spaces follows)
#   wait            reads a line from stdin first (run before the daemon)
#   proto:T/N       creates a socket of type T and protocol N: made or the errno
#   unix:ADDR       Unix-domain stream connect (ADDR a path, %00 in it a NUL
#                   byte, or @NAME for an abstract name): ok or the errno name
#   unixdg:ADDR     Unix-domain datagram sendto: sent or the errno name
#   serve:@NAME     binds a Unix-domain stream socket at the abstract NAME,
#                   prints "ready", and keeps it until stdin closes
#   /PATH           ignored (a plain argument)
import errno, os, socket, struct, subprocess, sys


def err(e):
    return errno.errorcode.get(e.errno, str(e))


def split(hostport):
    host, port = hostport.rsplit(":", 1)
    return host.strip("[]"), int(port)


def using(s, act):
    """`act(s)`, or the errno name it fails with; `s` closed after."""
    s.settimeout(3)
    try:
        return act(s)
    except OSError as e:
        return err(e)
    finally:
        s.close()


def attempt(arg, kind, act):
    """`act(socket, (host, port))` on a socket of `kind` for HOST:PORT."""
    host, port = split(arg)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return using(socket.socket(family, kind), lambda s: act(s, (host, port)))


def tcp(arg):
    return attempt(arg, socket.SOCK_STREAM, lambda s, a: s.connect(a) or "ok")


def udp(arg):
    return attempt(arg, socket.SOCK_DGRAM, lambda s, a: s.sendto(b"x", a) and "sent")


def icmp(host):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as e:
        return "socket-" + err(e)
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    csum = 0
    for i in range(0, len(body), 2):
        csum += (body[i] << 8) + body[i + 1]
    csum = (csum >> 16) + (csum & 0xFFFF)
    csum = ~csum & 0xFFFF
    packet = struct.pack("!BBHHH", 8, 0, csum, 1, 1)
    try:
        s.sendto(packet, (host, 0))
        return "sent"
    except OSError as e:
        return err(e)
    finally:
        s.close()


def unix_addr(arg):
    """@NAME: abstract; %00 in a path: a NUL byte (what follows it is
    given to the kernel too, which stops at the NUL)."""
    if arg.startswith("@"):
        return "\0" + arg[1:]
    return arg.replace("%00", "\0").encode() if "%00" in arg else arg


def unix(arg, kind):
    addr = unix_addr(arg)
    if kind == socket.SOCK_STREAM:
        act = lambda s: s.connect(addr) or "ok"
    else:
        act = lambda s: s.sendto(b"x", addr) and "sent"
    return using(socket.socket(socket.AF_UNIX, kind), act)


def serve(arg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(unix_addr(arg))
    s.listen(64)
    print("ready", flush=True)
    sys.stdin.read()
    s.close()
    return "served"


def dns(arg):
    name, server = arg.split("@")
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(q, (server, 53))
        data = s.recv(2048)
    except OSError as e:
        return err(e)
    finally:
        s.close()
    # The answer's last 4 bytes: the A record of a one-answer reply.
    return ".".join(str(b) for b in data[-4:]) if len(data) > len(q) else "no-answer"


def main():
    out = []
    args = sys.argv[1:]
    for i, a in enumerate(args):
        kind, _, rest = a.partition(":")
        if kind == "wait":
            sys.stdin.readline()
        elif kind == "tcp":
            out.append(tcp(rest))
        elif kind == "udp":
            out.append(udp(rest))
        elif kind == "icmp":
            out.append(icmp(rest))
        elif kind == "proto":
            # proto:TYPE/NUMBER: can a socket of that type and protocol be made?
            t, n = rest.split("/")
            try:
                socket.socket(socket.AF_INET, int(t), int(n)).close()
                out.append("made")
            except OSError as e:
                out.append("socket-" + err(e))
        elif kind == "dns":
            out.append(dns(rest))
        elif kind == "unix":
            out.append(unix(rest, socket.SOCK_STREAM))
        elif kind == "unixdg":
            out.append(unix(rest, socket.SOCK_DGRAM))
        elif kind == "serve":
            out.append(serve(rest))
        elif kind == "sh":
            r = subprocess.run(["/bin/sh", "-c", rest], capture_output=True, text=True)
            out.append(r.stdout.strip())
        elif kind == "exec":
            print(" ".join(out), end=" " if out else "", flush=True)
            argv = rest.split(" ") + args[i + 1 :]
            os.execv(argv[0], argv)
        elif a.startswith("/"):
            pass  # a path given as a plain argument
        else:
            out.append("bad-action")
    print(" ".join(out), flush=True)


main()
