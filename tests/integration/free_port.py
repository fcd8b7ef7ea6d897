"""Prints a free TCP port on 127.0.0.1 below the kernel's ephemeral range
(32768 and up), so a test server that restarts on its port cannot find it
taken by a client socket's automatic port (tests/testlib.c does the same)."""
import random
import socket

for _ in range(1000):
    port = random.randint(20000, 31999)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(port)
        break
    except OSError:
        pass
    finally:
        s.close()
else:
    raise SystemExit("free_port.py: no free port in 20000-31999")
