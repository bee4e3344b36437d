// walcast/testing: helpers for testing programs built on walcast, kept out of the main export so
// that importing the library does not pull in a Postgres launcher.
export { startThrowawayPostgres, type ThrowawayPostgres, type ThrowawayOptions } from './pg/throwaway.js';
