// Who is who in bench/auth.ts, shared by the orchestrator (which writes the memberships) and the
// load clients (which connect as these users and check what they receive): connection n is the
// user "u<n>", member of exactly one room, n % rooms.
export const userOf = (n: number): string => `u${n}`;
export const roomOf = (n: number, rooms: number): number => n % rooms;
