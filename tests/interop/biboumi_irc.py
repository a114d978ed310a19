"""A real transport end to end: biboumi (XMPP-IRC gateway) as a Starling component.

Starts ngircd on 127.0.0.2:6667 and biboumi connected to Starling's component
port. A slixmpp user joins the IRC channel #starling through biboumi, and a plain
IRC client (a socket here) in the same channel exchanges messages with her both ways.

Usage: biboumi_irc.py WORKDIR HOST C2S_PORT COMPONENT_PORT CAFILE USER_JID PASSWORD GATEWAY_DOMAIN SECRET
Prints one line per step, then "OK".
"""

import asyncio
import os
import sys

import slixmpp

from slix_user import TestUser

TIMEOUT = 30
IRC_HOST = "127.0.0.2"
IRC_PORT = 6667
CHANNEL = "#starling"


async def start_ngircd(workdir):
    conf = os.path.join(workdir, "ngircd.conf")
    with open(conf, "w") as f:
        f.write(f"""[Global]
Name = irc.starling.test
Info = Starling test network
Listen = {IRC_HOST}
Ports = {IRC_PORT}
PidFile = {workdir}/ngircd.pid
MotdPhrase = Starling test network
[Limits]
MaxNickLength = 30
PingTimeout = 300
[Options]
DNS = no
Ident = no
PAM = no
""")
    process = await asyncio.create_subprocess_exec(
        "ngircd", "--nodaemon", "--config", conf,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    # ngircd logs when its listener is up.
    await wait_for_line(process, "Now listening on")
    return process


async def start_biboumi(workdir, component_port, domain, secret):
    conf = os.path.join(workdir, "biboumi.cfg")
    with open(conf, "w") as f:
        f.write(f"""hostname={domain}
password={secret}
xmpp_server_ip=127.0.0.1
port={component_port}
identd_port=0
log_level=0
policy_directory=/etc/biboumi
db_name={workdir}/biboumi.sqlite
""")
    process = await asyncio.create_subprocess_exec(
        "biboumi", conf,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    # Biboumi logs once Starling accepted its handshake.
    await wait_for_line(process, "Authenticated")
    return process


async def wait_for_line(process, needle):
    seen = []
    async def read():
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"exited before {needle!r}: {seen}")
            text = line.decode(errors="replace").rstrip()
            seen.append(text)
            if needle in text:
                return
    await asyncio.wait_for(read(), TIMEOUT)
    # Keep draining so the process never blocks on a full pipe.
    asyncio.ensure_future(drain(process))


async def drain(process):
    while await process.stdout.readline():
        pass


class IrcClient:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, nick):
        reader, writer = await asyncio.open_connection(IRC_HOST, IRC_PORT)
        client = cls(reader, writer)
        client.send(f"NICK {nick}")
        client.send(f"USER {nick} 0 * :Starling test IRC user")
        await client.wait_for(lambda parts: len(parts) > 1 and parts[1] == "001")
        return client

    def send(self, line):
        self.writer.write((line + "\r\n").encode())

    async def wait_for(self, predicate):
        async def read():
            while True:
                line = (await self.reader.readline()).decode(errors="replace").rstrip("\r\n")
                if not line:
                    raise RuntimeError("the IRC server closed the connection")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                    continue
                parts = line.split(" ")
                if predicate(parts):
                    return line
        return await asyncio.wait_for(read(), TIMEOUT)


class User(TestUser):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password, cafile)
        self.groupchat = asyncio.Queue()
        self.room_presence = asyncio.Queue()
        self.add_event_handler(
            "message", lambda m: self.groupchat.put_nowait(m) if m["type"] == "groupchat" else None
        )
        self.add_event_handler("presence", lambda p: self.room_presence.put_nowait(p))


async def main():
    workdir, host, c2s_port, component_port, cafile, user_jid, password, domain, secret = sys.argv[1:10]
    ngircd = await start_ngircd(workdir)
    biboumi = None
    try:
        print("ngircd is up")
        biboumi = await start_biboumi(workdir, component_port, domain, secret)
        print("biboumi connected to Starling as a component")

        irc = await IrcClient.connect("ircbob")
        irc.send(f"JOIN {CHANNEL}")
        await irc.wait_for(lambda p: len(p) > 2 and p[1] == "JOIN" and p[0].startswith(":ircbob!"))
        print("the IRC user joined the channel")

        user = User(user_jid, password, cafile)
        user.connect(host, int(c2s_port))
        await asyncio.wait_for(user.session_ready, TIMEOUT)
        room = f"{CHANNEL}%{IRC_HOST}@{domain}"
        join = user.make_presence(pto=f"{room}/alice")
        join.append(slixmpp.xmlstream.ET.fromstring("<x xmlns='http://jabber.org/protocol/muc'/>"))
        join.send()
        # Self-presence from the room (status 110) means biboumi joined the channel for her.
        while True:
            presence = await asyncio.wait_for(user.room_presence.get(), TIMEOUT)
            if presence["from"].bare == room and "110" in str(presence):
                break
            assert presence["type"] != "error", presence
        await irc.wait_for(lambda p: len(p) > 2 and p[1] == "JOIN" and p[0].startswith(":alice!"))
        print("the XMPP user joined the IRC channel through biboumi")

        user.send_message(mto=room, mbody="hello from XMPP", mtype="groupchat")
        line = await irc.wait_for(lambda p: len(p) > 3 and p[1] == "PRIVMSG" and p[2] == CHANNEL)
        assert line.startswith(":alice!") and line.endswith(":hello from XMPP"), line
        print("IRC received the XMPP message")

        irc.send(f"PRIVMSG {CHANNEL} :hello from IRC")
        while True:
            message = await asyncio.wait_for(user.groupchat.get(), TIMEOUT)
            if message["from"].resource == "ircbob":
                break
        assert message["body"] == "hello from IRC", message
        print("XMPP received the IRC message")
        user.disconnect()
    finally:
        for process in (biboumi, ngircd):
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()
    print("OK")


if __name__ == "__main__":
    asyncio.run(main())
