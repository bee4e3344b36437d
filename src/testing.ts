// walcast/testing: helpers for testing programs built on walcast, kept out of the main export so
// that importing the library does not pull in the Postgres and NATS launchers.
export { startThrowawayPostgres, type ThrowawayPostgres, type ThrowawayOptions } from './pg/throwaway.js';
export { startThrowawayNats, findNatsServer, type ThrowawayNats, type ThrowawayNatsServer, type ThrowawayNatsOptions } from './nats/throwaway.js';
