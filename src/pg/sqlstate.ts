// The Postgres error codes walcast acts on, by their names in the errcodes appendix
// (https://www.postgresql.org/docs/15/errcodes-appendix.html), and the one way to read a code.
// A code is compared here by name; its meaning for the operator is said where it is translated
// (src/pg/connect.ts, src/capture/preflight.ts, src/auth/setup.ts, src/cli/policy.ts, src/sql/migrate.ts).

export const SQLSTATE = {
  invalidAuthorizationSpecification: '28000',
  invalidPassword: '28P01',
  invalidCatalogName: '3D000',
  insufficientPrivilege: '42501',
  undefinedColumn: '42703',
  undefinedObject: '42704',
  undefinedTable: '42P01',
  tooManyConnections: '53300',
  configurationLimitExceeded: '53400',
  objectNotInPrerequisiteState: '55000',
  objectInUse: '55006',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
} as const;

export type SqlState = (typeof SQLSTATE)[keyof typeof SQLSTATE];

/** Classes: the first two characters of a code; every code of a class shares its meaning. */
export const SQLSTATE_CLASS = {
  /** 28xxx: the server refused the login (bad password, no pg_hba.conf entry, unknown role). */
  invalidAuthorizationSpecification: '28',
} as const;

/**
 * The `code` an error from pg carries: a SQLSTATE when Postgres raised it, a Node errno name
 * (ECONNREFUSED, ENOTFOUND, ...) when the socket failed; undefined for anything else.
 */
export function pgCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** The class of a SQLSTATE (its first two characters). */
export function sqlstateClass(code: string): string {
  return code.slice(0, 2);
}

/** A login the server refused (class 28), whatever the reason it gave. */
export function isAuthFailure(code: string | undefined): boolean {
  return code !== undefined && code.length === 5 && sqlstateClass(code) === SQLSTATE_CLASS.invalidAuthorizationSpecification;
}
