"""Has Prosody (Debian's package) export real account data in XEP-0227 format.

Starts Prosody on loopback with its own data directory, registers alice, bob and
carol with prosodyctl, and has slixmpp clients make data the way users do:
alice and bob subscribe to each other, carol asks for alice's presence and gets
no answer, alice stores a vCard and private XML. Then Prosody stops and
prosody-migrator writes its internal storage out as XEP-0227 files.

Usage: prosody_export.py WORKDIR PORT PASSWORD
Prints the paths of the exported files, one per line, then "OK".
"""

import asyncio
import glob
import os
import shutil
import signal
import ssl
import subprocess
import sys

import slixmpp

DOMAIN = "pie.test"
TIMEOUT = 30


def run_as_prosody(*args):
    subprocess.run(["runuser", "-u", "prosody", "--", *args], check=True)


def write_config(workdir, port):
    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={DOMAIN}", "-keyout", f"{workdir}/key.pem", "-out", f"{workdir}/cert.pem"],
        check=True, capture_output=True,
    )
    config = os.path.join(workdir, "prosody.cfg.lua")
    with open(config, "w") as f:
        f.write(f"""
pidfile = "{workdir}/prosody.pid"
data_path = "{data}"
log = {{ debug = "{workdir}/prosody.log" }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "private", "vcard", "ping" }}
modules_disabled = {{ "posix", "s2s" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
authentication = "internal_hashed"
storage = "internal"
ssl = {{ certificate = "{workdir}/cert.pem", key = "{workdir}/key.pem" }}
VirtualHost "{DOMAIN}"
""")
    migrator = os.path.join(workdir, "migrator.cfg.lua")
    with open(migrator, "w") as f:
        f.write(f"""
input {{
    type = "internal";
    path = "{data}";
    hosts = {{ ["{DOMAIN}"] = {{ "accounts", "roster", "vcard", "private" }} }};
}}
output {{
    type = "xep0227";
}}
""")
    os.makedirs(os.path.join(workdir, "export"), exist_ok=True)
    shutil.chown(workdir, "prosody", "prosody")
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), "prosody", "prosody")
    return config, migrator


class User(slixmpp.ClientXMPP):
    def __init__(self, name, password):
        super().__init__(f"{name}@{DOMAIN}/export", password)
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        # None: subscription requests are left to the handlers below.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.register_plugin("xep_0054")
        self.register_plugin("xep_0049")
        self.ready = asyncio.get_event_loop().create_future()
        self.subscribed = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("presence_subscribed", lambda p: self.subscribed.put_nowait(p["from"].bare))
        self.add_event_handler("failed_auth", lambda _: self.ready.set_exception(RuntimeError("auth failed")))

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        self.ready.set_result(True)


async def online(name, password, port):
    user = User(name, password)
    user.connect("127.0.0.1", port)
    await asyncio.wait_for(user.ready, TIMEOUT)
    return user


async def make_data(port, password):
    alice = await online("alice", password, port)
    bob = await online("bob", password, port)
    # alice asks bob, bob approves and asks back, alice approves.
    bob.add_event_handler("presence_subscribe", lambda p: (
        bob.send_presence(pto=p["from"].bare, ptype="subscribed"),
        bob.send_presence(pto=p["from"].bare, ptype="subscribe"),
    ))
    alice.add_event_handler("presence_subscribe", lambda p: (
        alice.send_presence(pto=p["from"].bare, ptype="subscribed")
        if p["from"].bare == f"bob@{DOMAIN}" else None
    ))
    await alice.update_roster(f"bob@{DOMAIN}", name="Bob", groups=["Friends"])
    alice.send_presence(pto=f"bob@{DOMAIN}", ptype="subscribe")
    assert await asyncio.wait_for(alice.subscribed.get(), TIMEOUT) == f"bob@{DOMAIN}"
    assert await asyncio.wait_for(bob.subscribed.get(), TIMEOUT) == f"alice@{DOMAIN}"

    carol = await online("carol", password, port)
    carol.send_presence(pto=f"alice@{DOMAIN}", ptype="subscribe")
    await carol.get_roster()  # a round trip: the request before it was handled

    vcard = alice["xep_0054"].make_vcard()
    vcard["FN"] = "Alice Liddell"
    vcard["NICKNAME"] = "alice"
    await alice["xep_0054"].publish_vcard(vcard)
    prefs = slixmpp.xmlstream.ET.fromstring("<prefs xmlns='example:prefs'><colour>blue</colour></prefs>")
    await alice["xep_0049"].store(prefs)
    for user in (alice, bob, carol):
        user.disconnect()
        await asyncio.wait_for(user.disconnected, TIMEOUT)


def main():
    workdir, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    config, migrator = write_config(workdir, port)
    for name in ("alice", "bob", "carol"):
        run_as_prosody("prosodyctl", "--config", config, "register", name, DOMAIN, password)
    prosody = subprocess.Popen(["runuser", "-u", "prosody", "--", "prosody", "--config", config])
    try:
        asyncio.run(asyncio.wait_for(wait_and_make_data(port, password), 2 * TIMEOUT))
    finally:
        prosody.send_signal(signal.SIGTERM)
        prosody.wait(TIMEOUT)
    # Prosody's XEP-0227 driver writes to its compiled-in data directory
    # (/var/lib/prosody), whatever the migrator's output path: give it ours there.
    export = os.path.join(workdir, "export")
    subprocess.run(
        ["unshare", "-m", "--", "sh", "-c",
         f"mount --bind {export} /var/lib/prosody && "
         f"runuser -u prosody -- prosody-migrator --config={migrator} input output"],
        check=True, capture_output=True,
    )
    files = sorted(glob.glob(os.path.join(workdir, "export", "*.xml")))
    assert files, "prosody-migrator wrote no files"
    for path in files:
        print(path)
    print("OK")


async def wait_and_make_data(port, password):
    # Prosody is ready once it accepts connections; connect attempts are the event.
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    await make_data(port, password)


if __name__ == "__main__":
    main()
