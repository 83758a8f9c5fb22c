#!/usr/bin/env node
// iso8583_npm: cross-checks lib/iso8583 against an independent codec, the npm package iso_8583
// (zemuldo), configured with our field formats (docs/system-design.md section 4).
//
//   node check_npm.js NODE_MODULES_DIR MESSAGES.json
//
// MESSAGES.json comes from gen_msgs (messages built with lib/iso8583). For each message:
//  1. the 2-byte length header is checked by hand (the package strips it without reading it);
//  2. unpack: the package parses the message (binary bitmap read as bytes) and every field it
//     returns is compared with ours, and no field may be missing or extra;
//  3. pack: the package builds the message again from our field values and the bytes are
//     compared, with the differences the package cannot avoid accounted for precisely (see
//     docs/switchsim.md): it always writes a secondary bitmap, and it cannot carry a
//     variable-length binary field (DE 55) as bytes.
// Exit 0 when everything it can compare agrees, 1 otherwise.
'use strict';
const path = require('path');
const fs = require('fs');

const modules = process.argv[2];
const messages = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const ISO8583 = require(path.join(modules, 'iso_8583'));

// Our profile in the package's terms. ContentType is what its pack-side validator accepts;
// for fixed 'b' fields the package counts MaxLen in hex characters (2 per byte).
const fmt = (ContentType, LenType, MaxLen, Label) => ({ ContentType, LenType, MaxLen, Label });
const formats = {
  2: fmt('n', 'llvar', 19, 'PAN'),
  3: fmt('n', 'fixed', 6, 'processing code'),
  4: fmt('n', 'fixed', 12, 'amount'),
  7: fmt('n', 'fixed', 10, 'transmission date/time'),
  11: fmt('n', 'fixed', 6, 'STAN'),
  12: fmt('n', 'fixed', 6, 'local time'),
  13: fmt('n', 'fixed', 4, 'local date'),
  14: fmt('n', 'fixed', 4, 'expiry'),
  22: fmt('n', 'fixed', 3, 'POS entry mode'),
  23: fmt('n', 'fixed', 3, 'card sequence number'),
  25: fmt('n', 'fixed', 2, 'POS condition code'),
  32: fmt('n', 'llvar', 11, 'acquirer ID'),
  37: fmt('an', 'fixed', 12, 'RRN'),
  38: fmt('an', 'fixed', 6, 'authorization ID'),
  39: fmt('an', 'fixed', 2, 'response code'),
  41: fmt('ans', 'fixed', 8, 'terminal ID'),
  42: fmt('ans', 'fixed', 15, 'card acceptor ID'),
  49: fmt('n', 'fixed', 3, 'currency'),
  52: fmt('b', 'fixed', 16, 'PIN block'),
  55: fmt('b', 'lllvar', 255, 'ICC data'),
  62: fmt('ans', 'lllvar', 999, 'private (card data / balance)'),
  64: fmt('b', 'fixed', 16, 'MAC'),
  70: fmt('n', 'fixed', 3, 'network management code'),
  90: fmt('n', 'fixed', 42, 'original data elements'),
  128: fmt('b', 'fixed', 16, 'MAC'),
};
const VAR_BINARY = new Set(['55']); // LLLVAR b: the package has no byte-exact variable binary

let failures = 0;
let lossy = 0;
const fail = (m, what) => {
  failures++;
  console.log(`FAIL ${m.name}: ${what}`);
};
const ok = (m, what) => console.log(`ok   ${m.name}: ${what}`);

for (const m of messages) {
  const frame = Buffer.from(m.frame, 'hex');
  const body = frame.subarray(2);
  // 1. length header: big-endian count of the message bytes.
  if (frame.readUInt16BE(0) !== body.length) fail(m, 'length header');
  else ok(m, `length header ${body.length}`);

  // 2. unpack with the package.
  const json = new ISO8583(undefined, formats).getIsoJSON(frame, {});
  if (json.error) {
    fail(m, `package refused to unpack: ${json.error}`);
    continue;
  }
  if (json['0'] !== m.mti) fail(m, `MTI ${json['0']} != ${m.mti}`);
  const theirs = Object.keys(json).filter((k) => k !== '0' && k !== '1');
  const ours = Object.keys(m.fields);
  const same = theirs.length === ours.length && ours.every((k) => theirs.includes(k));
  if (!same) fail(m, `field sets differ: ours ${ours} theirs ${theirs}`);
  else ok(m, `fields ${ours.join(',')}`);
  for (const k of ours) {
    const want = m.fields[k];
    const got = json[k];
    if (m.binary.includes(Number(k)) && VAR_BINARY.has(k)) {
      // The package slices the right bytes (its length prefix counts bytes, and the fields
      // after it parse) but returns them decoded as UTF-8 text: compare that text, and say
      // whether the bytes survive.
      const bytes = Buffer.from(want, 'hex');
      if (got !== bytes.toString('utf8')) fail(m, `DE ${k} (as UTF-8 text) differs`);
      else if (!Buffer.from(got, 'utf8').equals(bytes)) {
        lossy++;
        ok(m, `DE ${k} same bytes sliced; value only as lossy UTF-8 text (binary >= 0x80)`);
      } else ok(m, `DE ${k} equal`);
    } else if (m.binary.includes(Number(k))) {
      if (String(got).toUpperCase() !== want) fail(m, `DE ${k} ${got} != ${want}`);
    } else if (got !== want) {
      fail(m, `DE ${k} '${got}' != '${want}'`);
    }
  }

  // 3. pack with the package from our values, compare the bytes.
  const hasVarBinary = ours.some((k) => VAR_BINARY.has(k));
  if (hasVarBinary) {
    console.log(`skip ${m.name}: pack not comparable (DE 55 binary LLLVAR: package packs text)`);
    continue;
  }
  const src = { 0: m.mti };
  for (const k of ours) src[k] = m.fields[k];
  const packed = new ISO8583(src, formats).getBufferMessage();
  if (!Buffer.isBuffer(packed)) {
    fail(m, `package refused to pack: ${JSON.stringify(packed)}`);
    continue;
  }
  const secondary = (body[4] & 0x80) !== 0;
  let expect = frame;
  if (!secondary) {
    // The package always writes a secondary bitmap: ours with bit 1 set and 8 zero bytes
    // after the primary bitmap, the header 8 higher; nothing else may differ.
    const hdr = Buffer.alloc(2);
    hdr.writeUInt16BE(body.length + 8);
    const primary = Buffer.from(body.subarray(4, 12));
    primary[0] |= 0x80;
    expect = Buffer.concat([hdr, body.subarray(0, 4), primary, Buffer.alloc(8), body.subarray(12)]);
  }
  if (!packed.equals(expect)) fail(m, `package packs ${packed.toString('hex')}`);
  else ok(m, `package packs the same bytes${secondary ? '' : ' (but for its always-present secondary bitmap)'}`);
}
console.log(`${messages.length} messages, ${failures} failure(s), ${lossy} lossy DE 55 value(s)`);
process.exit(failures === 0 && messages.length >= 5 ? 0 : 1);
