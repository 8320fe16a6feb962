export declare function splitSqlStatements(sql: string): string[];
