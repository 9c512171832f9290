// A real SMTP server for boxoffice's notification tests and `scripts/up`:
// accepts every message on 127.0.0.1, parses it (mailparser) and stores it
// in MAIL_DIR as <n>.eml (the bytes received) and <n>.json (envelope,
// headers, subject, text, html, attachments in base64).
//
// Environment: SMTP_LISTEN ("127.0.0.1:2525"; port 0 picks one), MAIL_DIR
// (required), SMTP_PARSE=off to keep only the .eml files, SMTP_STORE=log
// (benchmarks; implies SMTP_PARSE=off) to append every message to one file,
// MAIL_DIR/received.log, as its length in bytes, a newline, the bytes and a
// newline. Prints "listening on 127.0.0.1:PORT" once it accepts
// connections.
//
// Fault injection for the crash tests: while the file MAIL_DIR/.hold
// exists, a message is stored and then its "250 OK" is withheld until the
// file is removed. A sender killed in that window has delivered the mail
// without learning it did.
import fs from 'node:fs';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

const [host, portText] = (process.env.SMTP_LISTEN || '127.0.0.1:2525').split(':');
const mailDir = process.env.MAIL_DIR;
if (!mailDir) {
  console.error('MAIL_DIR is required');
  process.exit(64);
}
fs.mkdirSync(mailDir, { recursive: true });
let counter = fs.readdirSync(mailDir).filter((name) => name.endsWith('.json')).length;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// SMTP_PARSE=off (benchmarks): keep only the .eml, so the server's own
// parsing is not what is measured.
const appendToLog = process.env.SMTP_STORE === 'log';
const parse = process.env.SMTP_PARSE !== 'off' && !appendToLog;
// One file opened once: creating a file per message costs the kernel more
// than the rest of the server's work on it, and a benchmark would measure
// that.
const log = appendToLog ? fs.openSync(path.join(mailDir, 'received.log'), 'a') : null;

async function store(raw, session) {
  counter += 1;
  const name = String(counter).padStart(6, '0');
  if (log !== null) {
    fs.writeSync(log, Buffer.concat([Buffer.from(`${raw.length}\n`), raw, Buffer.from('\n')]));
    return { message_id: '', to: session.envelope.rcptTo.map((rcpt) => rcpt.address), subject: '' };
  }
  if (!parse) {
    fs.writeFileSync(path.join(mailDir, `${name}.eml`), raw);
    return { message_id: '', to: session.envelope.rcptTo.map((rcpt) => rcpt.address), subject: '' };
  }
  const parsed = await simpleParser(raw);
  const record = {
    from: session.envelope.mailFrom && session.envelope.mailFrom.address,
    to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
    message_id: parsed.messageId || '',
    subject: parsed.subject || '',
    // Every header line as sent, e.g. "List-Unsubscribe: <https://…>".
    header_lines: parsed.headerLines.map((header) => header.line),
    headers: Object.fromEntries([...parsed.headers].map(([key, value]) => [key, typeof value === 'string' ? value : JSON.stringify(value)])),
    text: parsed.text || '',
    html: typeof parsed.html === 'string' ? parsed.html : '',
    attachments: parsed.attachments.map((attachment) => ({
      filename: attachment.filename || '',
      content_type: attachment.contentType,
      content_id: attachment.cid || '',
      content_base64: attachment.content.toString('base64'),
    })),
    received_at: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(mailDir, `${name}.eml`), raw);
  // Written whole, then renamed: a reader never sees half a message.
  const temporary = path.join(mailDir, `.${name}.json.tmp`);
  fs.writeFileSync(temporary, JSON.stringify(record, null, 2));
  fs.renameSync(temporary, path.join(mailDir, `${name}.json`));
  return record;
}

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  // No reverse DNS per connection (a test machine may have no resolver).
  disableReverseLookup: true,
  logger: false,
  size: 25 * 1024 * 1024,
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', async () => {
      try {
        const record = await store(Buffer.concat(chunks), session);
        if (parse) {
          console.log(`stored ${record.message_id} to ${record.to.join(',')}: ${record.subject}`);
        }
        while (fs.existsSync(path.join(mailDir, '.hold'))) {
          await sleep(20);
        }
        callback();
      } catch (error) {
        console.error(`could not store a message: ${error}`);
        callback(new Error('could not store the message'));
      }
    });
  },
});
server.on('error', (error) => console.error(`smtp error: ${error.message}`));
server.listen(Number(portText), host, () => {
  const address = server.server.address();
  console.log(`listening on ${address.address}:${address.port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
