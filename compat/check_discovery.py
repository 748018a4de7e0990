#!/usr/bin/env python3
"""Talk the Cloudstate protocol to a user function by hand and print everything it answers.

Acts as a minimal proxy: calls cloudstate.EntityDiscovery/discover and reportError, then drives
cloudstate.eventsourced.EventSourced/handle streams through a fixed set of scenarios (commands,
failures, replay with and without a snapshot, protocol errors) and prints every message the user
function sends back, plus how each stream ended.

Run it with the Python of the compat venv (grpcio + protobuf runtime):

  $CLOUDSTATE_COMPAT_DIR/python/bin/python compat/check_discovery.py --start node
  $CLOUDSTATE_COMPAT_DIR/python/bin/python compat/check_discovery.py --start python
  $CLOUDSTATE_COMPAT_DIR/python/bin/python compat/check_discovery.py --target 127.0.0.1:8080

The protocol messages are built from the repository's crates/protocol/proto (compiled on the fly
with the grpcio-tools protoc of the compat tools venv into a private descriptor pool), and the
shopping-cart messages from the descriptor set the user function itself returns from discover.
"""

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_COMPAT_DIR = os.environ.get("CLOUDSTATE_COMPAT_DIR") or os.path.join(
    os.path.expanduser("~"), ".cache", "cloudstate-compat")

SERVICE = "com.example.shoppingcart.ShoppingCart"
ES = "cloudstate.eventsourced.EventSourced"
TYPE_PREFIX = "type.googleapis.com/"
REPLY_TIMEOUT = 5.0


# ----------------------------------------------------------------------------------------------
# Message classes


def load_descriptor_set(fds, label):
    """Adds the files of a FileDescriptorSet to a fresh pool, in dependency order, whatever order
    (and duplicates) the set has. Returns (pool, report lines)."""
    by_name = {}
    notes = []
    for f in fds.file:
        if f.name in by_name:
            same = by_name[f.name].SerializeToString() == f.SerializeToString()
            notes.append("duplicate file %s (%s)" % (f.name, "identical" if same else "DIFFERENT content"))
            continue
        by_name[f.name] = f
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name, stack=()):
        if name in added:
            return
        if name in stack:
            raise RuntimeError("%s: circular import through %s" % (label, name))
        if name not in by_name:
            raise RuntimeError("%s: file %s is imported but not in the descriptor set" % (label, name))
        for dep in by_name[name].dependency:
            add(dep, stack + (name,))
        pool.Add(by_name[name])
        added.add(name)

    for f in fds.file:
        add(f.name)
    return pool, notes


class Messages:
    def __init__(self, pool):
        self.pool = pool
        self.factory = message_factory.MessageFactory(pool)

    def cls(self, full_name):
        return self.factory.GetPrototype(self.pool.FindMessageTypeByName(full_name))


def compile_protocol(protoc_cmd, proto_dir):
    tmp = tempfile.mkdtemp(prefix="check-discovery-")
    out = os.path.join(tmp, "protocol.desc")
    cmd = protoc_cmd + ["-I" + proto_dir, "--include_imports", "--descriptor_set_out=" + out,
                        "cloudstate/entity.proto", "cloudstate/event_sourced.proto"]
    subprocess.run(cmd, check=True)
    with open(out, "rb") as fh:
        fds = descriptor_pb2.FileDescriptorSet.FromString(fh.read())
    pool, _ = load_descriptor_set(fds, "protocol")
    return Messages(pool)


# ----------------------------------------------------------------------------------------------
# Formatting


def read_varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def raw_fields(buf):
    """Decodes the top level of a protobuf encoding into [(field number, wire type, value)]."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = read_varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            ln, pos = read_varint(buf, pos)
            val, pos = buf[pos:pos + ln], pos + ln
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        out.append((num, wt, val))
    return out


class Printer:
    def __init__(self, proto_msgs, user_msgs):
        self.p = proto_msgs
        self.u = user_msgs

    def any(self, a):
        url = a.type_url
        body = ""
        if url.startswith(TYPE_PREFIX) and self.u is not None:
            try:
                m = self.u.cls(url[len(TYPE_PREFIX):]).FromString(a.value)
                body = text_format.MessageToString(m, as_one_line=True)
                body = "{%s}" % body
            except KeyError:
                body = "<unknown type, %d bytes: %s>" % (len(a.value), a.value.hex())
            except Exception as e:  # does not parse
                body = "<%s; %d bytes: %s>" % (e, len(a.value), a.value.hex())
        else:
            body = "<%d bytes: %s>" % (len(a.value), a.value.hex())
        return "Any(%s %s)" % (url, body)

    def client_action(self, ca):
        which = ca.WhichOneof("action")
        if which is None:
            return "client_action=<absent>"
        if which == "reply":
            return "client_action.reply{payload=%s%s}" % (
                self.any(ca.reply.payload) if ca.reply.HasField("payload") else "<absent>",
                ", metadata=%s" % text_format.MessageToString(ca.reply.metadata, as_one_line=True)
                if ca.reply.HasField("metadata") else "")
        if which == "failure":
            f = ca.failure
            return "client_action.failure{command_id=%d, description=%r, restart=%s}" % (
                f.command_id, f.description, f.restart)
        fw = ca.forward
        return "client_action.forward{service=%s, command=%s, payload=%s}" % (
            fw.service_name, fw.command_name, self.any(fw.payload))

    def out(self, msg):
        which = msg.WhichOneof("message")
        if which == "reply":
            r = msg.reply
            parts = ["reply{command_id=%d" % r.command_id,
                     self.client_action(r.client_action) if r.HasField("client_action") else "client_action=<absent>"]
            parts.append("events=[%s]" % ", ".join(self.any(e) for e in r.events))
            parts.append("snapshot=%s" % (self.any(r.snapshot) if r.HasField("snapshot") else "<absent>"))
            if len(r.side_effects):
                parts.append("side_effects=%d" % len(r.side_effects))
            return ", ".join(parts) + "}"
        if which == "failure":
            f = msg.failure
            return "STREAM failure{command_id=%d, description=%r, restart=%s}" % (
                f.command_id, f.description, f.restart)
        return "<empty EventSourcedStreamOut: %s>" % msg.SerializeToString().hex()

    def inp(self, msg):
        which = msg.WhichOneof("message")
        if which == "init":
            i = msg.init
            s = "init{service_name=%s, entity_id=%s" % (i.service_name, i.entity_id)
            if i.HasField("snapshot"):
                s += ", snapshot{sequence=%d, %s}" % (i.snapshot.snapshot_sequence, self.any(i.snapshot.snapshot))
            return s + "}"
        if which == "event":
            return "event{sequence=%d, %s}" % (msg.event.sequence, self.any(msg.event.payload))
        if which == "command":
            c = msg.command
            return "command{id=%d, entity_id=%s, name=%s, %s}" % (c.id, c.entity_id, c.name, self.any(c.payload))
        return "<empty>"


# ----------------------------------------------------------------------------------------------
# Stream driver


class Stream:
    def __init__(self, channel, P, printer, title):
        self.P = P
        self.printer = printer
        self.inq = queue.Queue()
        self.outq = queue.Queue()
        self.ended = None
        In = P.cls("cloudstate.eventsourced.EventSourcedStreamIn")
        Out = P.cls("cloudstate.eventsourced.EventSourcedStreamOut")
        method = channel.stream_stream("/%s/handle" % ES, request_serializer=In.SerializeToString,
                                       response_deserializer=Out.FromString)
        print("\n--- stream: %s" % title)
        self.call = method(self._requests(), timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self):
        while True:
            m = self.inq.get()
            if m is None:
                return
            yield m

    def _read(self):
        try:
            for m in self.call:
                self.outq.put(("msg", m))
            self.outq.put(("end", self.call.code(), self.call.details()))
        except grpc.RpcError as e:
            self.outq.put(("end", e.code(), e.details()))

    def _show(self, item):
        if item[0] == "msg":
            print("   <- " + self.printer.out(item[1]))
        else:
            self.ended = item
            print("   <- STREAM CLOSED by user function: status=%s details=%r" % (item[1], item[2]))

    def send(self, msg, expect_reply=False):
        if self.ended:
            print("   -> (not sent, stream already closed) " + self.printer.inp(msg))
            return
        print("   -> " + self.printer.inp(msg))
        self.inq.put(msg)
        if expect_reply:
            self.wait(1)
        else:
            self.drain(0.3)

    def wait(self, n, timeout=REPLY_TIMEOUT):
        deadline = time.time() + timeout
        got = 0
        while got < n and not self.ended:
            try:
                item = self.outq.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                print("   (no message within %.1fs)" % timeout)
                return
            self._show(item)
            if item[0] == "msg":
                got += 1
                if item[1].WhichOneof("message") == "failure":
                    # a stream-level failure may be followed by the close: show it if it comes fast
                    self.drain(0.5)
                    return
        self.drain(0.1)

    def drain(self, secs):
        deadline = time.time() + secs
        while not self.ended:
            try:
                item = self.outq.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                return
            self._show(item)

    def close(self):
        if self.ended:
            return
        print("   -> (client half-closes the stream)")
        self.inq.put(None)
        deadline = time.time() + REPLY_TIMEOUT
        while not self.ended:
            try:
                item = self.outq.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                print("   (stream not closed by the user function within %.1fs; cancelling)" % REPLY_TIMEOUT)
                self.call.cancel()
                return
            self._show(item)


# ----------------------------------------------------------------------------------------------
# Checks


class Checker:
    def __init__(self, channel, P):
        self.channel = channel
        self.P = P
        self.U = None
        self.printer = Printer(P, None)
        self.next_id = 0

    # -- discovery -------------------------------------------------------------------------
    def discover(self):
        P = self.P
        ProxyInfo = P.cls("cloudstate.ProxyInfo")
        EntitySpec = P.cls("cloudstate.EntitySpec")
        call = self.channel.unary_unary("/cloudstate.EntityDiscovery/discover",
                                        request_serializer=ProxyInfo.SerializeToString,
                                        response_deserializer=EntitySpec.FromString)
        info = ProxyInfo(protocol_major_version=0, protocol_minor_version=2, proxy_name="check-discovery",
                         proxy_version="0.0.0", supported_entity_types=[ES])
        print("=== discover(%s)" % text_format.MessageToString(info, as_one_line=True))
        spec = call(info, timeout=10)
        si = spec.service_info
        print("service_info:")
        for f in ["service_name", "service_version", "service_runtime", "support_library_name",
                  "support_library_version", "protocol_major_version", "protocol_minor_version"]:
            print("  %-24s %r" % (f, getattr(si, f)))
        raw = [n for n, _, _ in raw_fields(si.SerializeToString())]
        print("  field numbers present on the wire: %s" % raw)
        print("entities:")
        for e in spec.entities:
            print("  entity_type=%s service_name=%s persistence_id=%s passivation=%s" % (
                e.entity_type, e.service_name, e.persistence_id,
                text_format.MessageToString(e.passivation_strategy, as_one_line=True)
                if e.HasField("passivation_strategy") else "<absent>"))
        top = [n for n, _, _ in raw_fields(spec.SerializeToString())]
        print("EntitySpec top-level field numbers on the wire: %s" % top)

        fds = descriptor_pb2.FileDescriptorSet.FromString(spec.proto)
        print("descriptor set: %d files, %d bytes" % (len(fds.file), len(spec.proto)))
        seen = set()
        for i, f in enumerate(fds.file):
            missing_before = [d for d in f.dependency if d not in seen]
            print("  [%d] %-36s package=%-40s imports=%s%s" % (
                i, f.name, f.package or "<none>", list(f.dependency),
                ("  (imports listed LATER or missing: %s)" % missing_before) if missing_before else ""))
            seen.add(f.name)
        names = [f.name for f in fds.file]
        dups = sorted({n for n in names if names.count(n) > 1})
        print("  duplicates: %s" % (dups or "none"))
        pool, notes = load_descriptor_set(fds, "user function")
        for n in notes:
            print("  note: " + n)
        print("  resolvable by name (all imports present, no cycles): yes")
        for f in fds.file:
            for m in f.message_type:
                for fld in m.field:
                    rawopt = fld.options.SerializeToString()
                    if fld.name == "user_id" or rawopt:
                        opts = raw_fields(rawopt)
                        print("  field option %s.%s.%s (#%d): raw=%s -> option numbers %s" % (
                            f.package, m.name, fld.name, fld.number, rawopt.hex(),
                            ["%d=%r" % (n, v) for n, _, v in opts]))
            for s in f.service:
                for meth in s.method:
                    rawopt = meth.options.SerializeToString()
                    print("  method %s.%s.%s(%s) -> %s  option numbers %s" % (
                        f.package, s.name, meth.name, meth.input_type, meth.output_type,
                        [n for n, _, _ in raw_fields(rawopt)]))
        self.U = Messages(pool)
        self.printer = Printer(self.P, self.U)
        return spec

    def report_error(self):
        UFE = self.P.cls("cloudstate.UserFunctionError")
        Empty = self.P.cls("google.protobuf.Empty")
        call = self.channel.unary_unary("/cloudstate.EntityDiscovery/reportError",
                                        request_serializer=UFE.SerializeToString,
                                        response_deserializer=Empty.FromString)
        print("\n=== reportError(message='check-discovery: test error')")
        try:
            call(UFE(message="check-discovery: test error"), timeout=10)
            print("  -> OK (Empty)")
        except grpc.RpcError as e:
            print("  -> gRPC error status=%s details=%r" % (e.code(), e.details()))

    # -- message builders ----------------------------------------------------------------------
    def any_of(self, msg, type_url=None):
        Any = self.P.cls("google.protobuf.Any")
        return Any(type_url=type_url or TYPE_PREFIX + msg.DESCRIPTOR.full_name, value=msg.SerializeToString())

    def line(self, pid, name, qty):
        return self.U.cls("com.example.shoppingcart.persistence.LineItem")(product_id=pid, name=name, quantity=qty)

    def In(self, **kw):
        return self.P.cls("cloudstate.eventsourced.EventSourcedStreamIn")(**kw)

    def init(self, entity_id, snapshot=None, seq=0, service=SERVICE):
        Init = self.P.cls("cloudstate.eventsourced.EventSourcedInit")
        i = Init(service_name=service, entity_id=entity_id)
        if snapshot is not None:
            i.snapshot.snapshot_sequence = seq
            i.snapshot.snapshot.CopyFrom(self.any_of(snapshot))
        return self.In(init=i)

    def event(self, seq, ev):
        Ev = self.P.cls("cloudstate.eventsourced.EventSourcedEvent")
        return self.In(event=Ev(sequence=seq, payload=self.any_of(ev)))

    def item_added(self, pid, name, qty):
        return self.U.cls("com.example.shoppingcart.persistence.ItemAdded")(item=self.line(pid, name, qty))

    def command(self, entity_id, name, payload, type_url=None):
        self.next_id += 1
        Cmd = self.P.cls("cloudstate.Command")
        return self.In(command=Cmd(entity_id=entity_id, id=self.next_id, name=name,
                                   payload=self.any_of(payload, type_url)))

    def add(self, uid, pid, name, qty, type_url=None):
        m = self.U.cls("com.example.shoppingcart.AddLineItem")(user_id=uid, product_id=pid, name=name, quantity=qty)
        return self.command(uid, "AddItem", m, type_url)

    def remove(self, uid, pid):
        m = self.U.cls("com.example.shoppingcart.RemoveLineItem")(user_id=uid, product_id=pid)
        return self.command(uid, "RemoveItem", m)

    def get(self, uid):
        return self.command(uid, "GetCart", self.U.cls("com.example.shoppingcart.GetShoppingCart")(user_id=uid))

    def stream(self, title):
        self.next_id = 0
        return Stream(self.channel, self.P, self.printer, title)

    # -- scenarios -----------------------------------------------------------------------------
    def scenarios(self, skip_snapshot_init=False):
        print("\n=== EventSourced/handle scenarios")
        s = self.stream("basic: init u1, AddItem, GetCart, failing AddItem (-1), GetCart, RemoveItem absent, "
                        "RemoveItem present, 5 more AddItems (snapshot?)")
        s.send(self.init("u1"))
        s.send(self.add("u1", "p1", "Apple", 2), True)
        s.send(self.get("u1"), True)
        s.send(self.add("u1", "p2", "Pear", -1), True)
        s.send(self.get("u1"), True)
        s.send(self.remove("u1", "nope"), True)
        s.send(self.add("u1", "p1", "Apple", 3), True)
        s.send(self.add("u1", "p3", "Fig", 1), True)
        s.send(self.remove("u1", "p3"), True)
        s.send(self.add("u1", "p4", "Kiwi", 1), True)
        s.send(self.add("u1", "p5", "Plum", 1), True)
        s.send(self.add("u1", "p6", "Lime", 1), True)
        s.send(self.get("u1"), True)
        s.close()

        s = self.stream("empty cart: init u-empty, GetCart")
        s.send(self.init("u-empty"))
        s.send(self.get("u-empty"), True)
        s.close()

        s = self.stream("replay without snapshot: events 1..4, GetCart, AddItem (5th event), AddItem (6th)")
        s.send(self.init("u2"))
        s.send(self.event(1, self.item_added("p1", "Apple", 1)))
        s.send(self.event(2, self.item_added("p2", "Pear", 2)))
        s.send(self.event(3, self.item_added("p1", "Apple", 4)))
        s.send(self.event(4, self.U.cls("com.example.shoppingcart.persistence.ItemRemoved")(product_id="p2")))
        s.send(self.get("u2"), True)
        s.send(self.add("u2", "p3", "Fig", 1), True)
        s.send(self.add("u2", "p3", "Fig", 1), True)
        s.send(self.get("u2"), True)
        s.close()

        if skip_snapshot_init:
            print("\n--- (snapshot-in-init scenario skipped)")
        else:
            snap = self.U.cls("com.example.shoppingcart.persistence.CartSnapshot")(
                items=[self.line("p1", "Apple", 3)])
            s = self.stream("replay with snapshot: init u3 with snapshot@5 {p1 x3}, events 6,7, GetCart, "
                            "AddItem x3 (events 8,9,10: snapshot at 10?), GetCart")
            s.send(self.init("u3", snap, 5))
            s.send(self.event(6, self.item_added("p2", "Pear", 1)))
            s.send(self.event(7, self.item_added("p1", "Apple", 2)))
            s.send(self.get("u3"), True)
            s.send(self.add("u3", "p3", "Fig", 1), True)
            s.send(self.add("u3", "p3", "Fig", 1), True)
            s.send(self.add("u3", "p4", "Kiwi", 1), True)
            s.send(self.get("u3"), True)
            s.close()

        s = self.stream("unknown command name (payload AddLineItem)")
        s.send(self.init("u4"))
        s.send(self.command("u4", "Nope", self.U.cls("com.example.shoppingcart.AddLineItem")(user_id="u4")), True)
        s.send(self.get("u4"), True)
        s.close()

        s = self.stream("AddItem with an unknown payload type URL, then GetCart")
        s.send(self.init("u5"))
        s.send(self.add("u5", "p1", "Apple", 1, type_url=TYPE_PREFIX + "com.example.Unknown"), True)
        s.send(self.get("u5"), True)
        s.close()

        s = self.stream("AddItem whose payload bytes do not parse (user-code/decoding exception), then GetCart")
        s.send(self.init("u6"))
        self.next_id += 1
        Cmd = self.P.cls("cloudstate.Command")
        Any = self.P.cls("google.protobuf.Any")
        bad = self.In(command=Cmd(entity_id="u6", id=self.next_id, name="AddItem", payload=Any(
            type_url=TYPE_PREFIX + "com.example.shoppingcart.AddLineItem", value=b"\x0a\xff\xff")))
        s.send(bad, True)
        s.send(self.get("u6"), True)
        s.close()

        s = self.stream("replayed event of an unknown type, then GetCart")
        s.send(self.init("u7"))
        Ev = self.P.cls("cloudstate.eventsourced.EventSourcedEvent")
        s.send(self.In(event=Ev(sequence=1, payload=Any(type_url=TYPE_PREFIX + "com.example.Unknown", value=b""))))
        s.send(self.get("u7"), True)
        s.close()

        s = self.stream("init for an unknown service")
        s.send(self.init("u8", service="com.example.Nope"))
        s.send(self.get("u8"), True)
        s.close()

        s = self.stream("command before init")
        s.send(self.get("u9"), True)
        s.close()

        s = self.stream("init twice")
        s.send(self.init("u10"))
        s.send(self.init("u10"))
        s.send(self.get("u10"), True)
        s.close()


# ----------------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_function(kind, compat_dir):
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1")
    if kind == "node":
        cmd = ["node", os.path.join(compat_dir, "node-shopping-cart", "index.js")]
    else:
        cmd = [os.path.join(compat_dir, "python", "bin", "python"),
               os.path.join(compat_dir, "python-shopping-cart", "shoppingcart.py")]
    log = open(os.path.join(tempfile.gettempdir(), "check-discovery-%s.log" % kind), "w")
    print("starting %s (log: %s) on 127.0.0.1:%d" % (" ".join(cmd), log.name, port))
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("%s function exited early with %s; see %s" % (kind, proc.returncode, log.name))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, "127.0.0.1:%d" % port, log.name
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("%s function did not listen on %d within 30s" % (kind, port))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--target", help="host:port of a running user function")
    g.add_argument("--start", choices=["node", "python"], help="start the installed function on a free port")
    ap.add_argument("--compat-dir", default=DEFAULT_COMPAT_DIR)
    ap.add_argument("--proto-dir", default=os.path.join(REPO, "crates", "protocol", "proto"),
                    help="directory holding cloudstate/entity.proto and cloudstate/event_sourced.proto")
    ap.add_argument("--protoc", help="protoc command (default: <compat-dir>/tools/bin/python -m grpc_tools.protoc)")
    ap.add_argument("--skip-snapshot-init", action="store_true",
                    help="do not send an init carrying a snapshot")
    ap.add_argument("--discover-only", action="store_true")
    args = ap.parse_args()

    protoc = args.protoc.split() if args.protoc else [
        os.path.join(args.compat_dir, "tools", "bin", "python"), "-m", "grpc_tools.protoc"]
    P = compile_protocol(protoc, args.proto_dir)

    proc = None
    target = args.target
    if args.start:
        proc, target, logname = start_function(args.start, args.compat_dir)
    try:
        channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(channel).result(timeout=15)
        c = Checker(channel, P)
        c.discover()
        c.report_error()
        if not args.discover_only:
            c.scenarios(skip_snapshot_init=args.skip_snapshot_init)
        channel.close()
    finally:
        if proc is not None:
            alive = proc.poll() is None
            if alive:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            print("\nuser function process still alive at the end: %s" % alive)
            print("user function log: %s" % logname)


if __name__ == "__main__":
    main()
