// One table decides which start failures end the program and explains them
// (START_FAILURES in src/capture/start-failures.ts): isFatalAtStart and explainStreamError must agree
// with it and with each other. Also the SQLSTATE helpers (src/pg/sqlstate.ts) and the
// translation of connection failures that reads them (src/pg/connect.ts).
import t from 'tap';
import { explainStreamError, isFatalAtStart, START_FAILURES, startFailure } from '../../src/capture/start-failures.js';
import * as errors from '../../src/errors.js';
import { explainConnectError } from '../../src/pg/connect.js';
import { isAuthFailure, pgCode, SQLSTATE, SQLSTATE_CLASS, sqlstateClass } from '../../src/pg/sqlstate.js';

/** An error as pg hands it on: message and SQLSTATE `code`. */
const pgError = (code: string, message = 'some message'): Error => Object.assign(new Error(message), { code });

const CODES: string[] = Object.values(SQLSTATE);
const CLASSES: string[] = Object.values(SQLSTATE_CLASS);

/** The codes of SQLSTATE a table key stands for: itself, or every code of its class. */
const codesOf = (key: string): string[] => (key.length === 2 ? CODES.filter((c) => sqlstateClass(c) === key) : [key]);

t.test('SQLSTATE: five characters each, no code twice, each class has codes', async (t) => {
  for (const [name, code] of Object.entries(SQLSTATE)) t.match(code, /^[0-9A-Z]{5}$/, name);
  t.equal(new Set(CODES).size, CODES.length, 'unique');
  for (const cls of CLASSES) t.ok(codesOf(cls).length > 0, `class ${cls} has named codes`);
});

t.test('pgCode reads a string code and nothing else', async (t) => {
  t.equal(pgCode(pgError('42P01')), '42P01');
  t.equal(pgCode(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), 'ECONNREFUSED', 'a socket error keeps its errno name');
  t.equal(pgCode({ code: '55006' }), '55006', 'any object with a code');
  t.equal(pgCode(new Error('no code')), undefined);
  t.equal(pgCode({ code: 42 }), undefined, 'a number is not a code');
  t.equal(pgCode(null), undefined);
  t.equal(pgCode(undefined), undefined);
  t.equal(pgCode('42P01'), undefined, 'a string is not an error');
});

t.test('isAuthFailure: the whole class 28, nothing else', async (t) => {
  t.ok(isAuthFailure(SQLSTATE.invalidPassword));
  t.ok(isAuthFailure(SQLSTATE.invalidAuthorizationSpecification));
  t.ok(isAuthFailure('28XYZ'), 'a code of the class not named here');
  t.notOk(isAuthFailure('42501'));
  t.notOk(isAuthFailure('28'), 'a class alone is not a code');
  t.notOk(isAuthFailure(undefined));
});

t.test('the table: keys are named codes or classes, each entry explained for every example', async (t) => {
  for (const [key, entry] of Object.entries(START_FAILURES)) {
    t.ok(CODES.includes(key) || CLASSES.includes(key), `${key} is a name of src/pg/sqlstate.ts`);
    t.ok(entry.examples.length > 0, `${key} has an example`);
    for (const code of codesOf(key)) {
      for (const message of entry.examples) {
        const err = pgError(code, message);
        t.equal(startFailure(err), entry, `${code} "${message}" finds its entry`);
        t.equal(isFatalAtStart(err), entry.fatal, `${code}: ${entry.fatal ? 'fatal' : 'retried'} at start, as the table says`);
        const why = explainStreamError(err, 'walcast');
        t.not(why, err, `${code} "${message}" is explained`);
        t.type(why, errors.DaemonError, 'as one of src/errors.ts');
        t.ok((why as errors.DaemonError).hint, 'with a hint');
        t.equal(why.cause, err, "with Postgres' own error as the cause");
      }
    }
  }
});

t.test('isFatalAtStart and explainStreamError agree on every code', async (t) => {
  const probes = [...CODES, '28XYZ', '42P07', '57P02', '08006', 'ECONNREFUSED'];
  for (const code of probes) {
    const err = pgError(code);
    const explained = explainStreamError(err, 'walcast') !== err;
    if (isFatalAtStart(err)) t.ok(explained, `${code}: fatal, so explained`);
    if (explained && !isFatalAtStart(err)) t.equal(startFailure(err)?.fatal, false, `${code}: explained, retried on purpose`);
    if (!explained) t.equal(startFailure(err), undefined, `${code}: in no entry, so neither fatal nor explained`);
  }
  t.notOk(isFatalAtStart(null), 'a stream that ended without an error is retried');
  const plain = new Error('replication stream ended');
  t.equal(explainStreamError(plain, 'walcast'), plain, 'an error without a code is told as it is');
});

t.test('the fatal set is the one decided (a change here is a change of behaviour)', async (t) => {
  const fatal = CODES.filter((c) => isFatalAtStart(pgError(c))).sort();
  t.same(fatal, [
    SQLSTATE.invalidAuthorizationSpecification,
    SQLSTATE.invalidPassword,
    SQLSTATE.insufficientPrivilege,
    SQLSTATE.undefinedObject,
    SQLSTATE.tooManyConnections,
    SQLSTATE.configurationLimitExceeded,
    SQLSTATE.objectNotInPrerequisiteState,
    SQLSTATE.objectInUse,
  ].sort());
  t.notOk(isFatalAtStart(pgError(SQLSTATE.cannotConnectNow)), 'a server starting or stopping is waited for');
  t.notOk(isFatalAtStart(pgError(SQLSTATE.adminShutdown)), 'a terminated walsender is reconnected');
});

t.test('explanations pick the cause from the message where one code has several', async (t) => {
  t.type(explainStreamError(pgError(SQLSTATE.undefinedObject, 'publication "walcast" does not exist'), 's'), errors.NotMigratedError);
  t.type(explainStreamError(pgError(SQLSTATE.undefinedObject, 'replication slot "s" does not exist'), 's'), errors.SlotInvalidError);
  t.type(explainStreamError(pgError(SQLSTATE.objectNotInPrerequisiteState, 'logical decoding requires wal_level >= logical'), 's'), errors.WalLevelError);
  t.type(explainStreamError(pgError(SQLSTATE.objectNotInPrerequisiteState, 'can no longer get changes from replication slot "s"'), 's'), errors.SlotInvalidError);
  t.match(explainStreamError(pgError(SQLSTATE.tooManyConnections, 'number of requested standby connections exceeds max_wal_senders (currently 1)'), 's'), { hint: /max_wal_senders/ });
  t.match(explainStreamError(pgError(SQLSTATE.tooManyConnections, 'too many connections for role "w"'), 's'), { hint: /CONNECTION LIMIT/ });
  t.match(explainStreamError(pgError(SQLSTATE.configurationLimitExceeded, 'all replication slots are in use'), 's'), { code: 'replication_limit', message: /cannot create replication slot "s"/ });
});

t.test('explainConnectError reads the named codes', async (t) => {
  const url = 'postgres://u:secret@db.example:5433/app';
  for (const code of [SQLSTATE.invalidPassword, SQLSTATE.invalidAuthorizationSpecification]) {
    t.type(explainConnectError(pgError(code, 'password authentication failed for user "u"'), url), errors.DbAuthError, code);
  }
  t.match(explainConnectError(pgError(SQLSTATE.invalidCatalogName, 'database "app" does not exist'), url), { code: 'db_unreachable', message: /database "app" does not exist \(at db\.example:5433\)/ });
  t.match(explainConnectError(pgError(SQLSTATE.cannotConnectNow, 'the database system is starting up'), url), { code: 'db_unreachable', message: /starting up or shutting down/ });
  t.match(explainConnectError(pgError('ECONNREFUSED', 'connect ECONNREFUSED'), url), { code: 'db_unreachable', message: /cannot reach Postgres at db\.example:5433 \(ECONNREFUSED\)/ });
  const other = pgError(SQLSTATE.undefinedTable);
  t.equal(explainConnectError(other, url), other, 'a code it does not translate passes through');
});
