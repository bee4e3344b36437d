// redact(): no part of a password reaches an error line or a log, whatever shape the URL has
// (issue #11 item 13: `postgres://u:p@ssw0rd@[::1/db` printed `u:***@ssw0rd`).
import t from 'tap';
import { checkDatabaseUrl, explainConnectError, redact } from '../../src/pg/connect.js';

// [input, the secret that must never appear, what should show]
const cases: Array<[string, string, string | RegExp]> = [
  ['postgres://u:p@ssw0rd@[::1/db', 'ssw0rd', 'postgres://... (the rest not shown: it does not parse and may hold a password)'],
  ['postgres://u:p@ssw0rd@[::1/db', 'p@ss', /^postgres:\/\/\.\.\. /],
  ['postgres://u:s3cr3t@host:5432/db', 's3cr3t', 'postgres://u:***@host:5432/db'],
  ['postgresql://u:s3cr3t@[::1]:5432/db', 's3cr3t', 'postgresql://u:***@[::1]:5432/db'],
  ['postgres://u:a@b@c@host/db', 'a@b@c', 'postgres://***@host/db'],
  ['postgres://u:a@b@c@host/db', 'b@c', 'postgres://***@host/db'],
  ['postgres://u:12/topsecret@host/db', 'topsecret', 'postgres://***@host/db'],
  ['postgres://u:99/topsecret@host/db', 'u:99', 'postgres://***@host/db'],
  ['postgres://u:pa/ss@host/db', 'ss@', /^postgres:\/\/\.\.\. /],
  ['postgres://u:p%40ss%2Fw0rd@host/db', 'p%40ss', 'postgres://u:***@host/db'],
  ['postgres://u:p%40ss%2Fw0rd@host/db', 'w0rd', 'postgres://u:***@host/db'],
  ['postgres://u:pw:with:colons@host/db', 'with', 'postgres://u:***@host/db'],
  ['postgres://:onlypass@host/db', 'onlypass', 'postgres://:***@host/db'],
  ['postgres://u:sp ace@host/db', 'ace', /^postgres:\/\/(\*\*\*@host\/db|\.\.\. )/],
  ['postgres://u:p?ss@host/db', 'ss@', /^postgres:\/\//],
  ['postgres://u:p#ss@host/db', '#ss', /^postgres:\/\//],
  ['postgres://u@host/db?password=qwerty123', 'qwerty123', 'postgres://u@host/db?password=***'],
  ['postgres://u@host/db?sslmode=require&sslpassword=keypass9', 'keypass9', 'postgres://u@host/db?sslmode=require&sslpassword=***'],
  ['postgres://u@host/db?pass%77ord=enc0ded', 'enc0ded', /password|pass%77ord=\*\*\*/],
  ['postgres://u@host/db?options=-c%20password%3Dhidden1', 'hidden1', 'postgres://u@host/db?options=***'],
  ['postgres://u:tail#frag@host/db', 'tail', /^postgres:\/\//],
  ['u:nosch3me@host/db', 'nosch3me', /^\(not shown/],
  ['//u:slashes0nly@host/db', 'slashes0nly', /^\(not shown/],
  ['host=db.example password=kv-secret user=u', 'kv-secret', /^\(not shown/],
  ["host=db password='quoted secret' user=u", 'quoted', /^\(not shown/],
  ['justapassword', 'justapassword', /^\(not shown/],
  ['postgres:u:noslash3s@host', 'noslash3s', /^\(not shown/],
  ['postgres://u:secret-no-host', 'secret-no-host', /^postgres:\/\/\.\.\. /],
];

t.test('the secret never appears', async (t) => {
  for (const [input, secret, shows] of cases) {
    const out = redact(input);
    t.notOk(out.includes(secret), `${JSON.stringify(input)} → ${JSON.stringify(out)} hides ${JSON.stringify(secret)}`);
    if (typeof shows === 'string') t.equal(out, shows, `${JSON.stringify(input)} shows what it can`);
    else t.match(out, shows, `${JSON.stringify(input)} shows what it can`);
  }
});

t.test('nor in the errors built from these URLs', async (t) => {
  for (const [input, secret] of cases) {
    let message: string;
    try {
      checkDatabaseUrl(input);
      message = explainConnectError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), input).message;
    } catch (err) {
      message = (err as Error).message;
    }
    t.notOk(message.includes(secret), `${JSON.stringify(input)}: ${JSON.stringify(message)}`);
  }
});
