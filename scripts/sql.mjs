// Splits an SQL file into statements for D1's batch(): strips `--` comments, splits on `;` at line ends.
// schema.sql keeps to that shape (no semicolons inside strings or triggers) so this stays this simple.

/** @param {string} sql @returns {string[]} */
export function splitSqlStatements(sql) {
  return sql
    .split("\n")
    .map((line) => line.replace(/--.*$/, ""))
    .join("\n")
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
