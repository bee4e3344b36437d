// SQL identifiers in statements walcast builds (slot and publication names, policy-table
// columns): always double-quoted, a quote inside doubled, so any name is taken literally and
// nothing in it is read as SQL.

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
