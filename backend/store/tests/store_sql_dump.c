/* mpos-store-sql: prints the SQL of mpos_store for the PostgreSQL portability check
 * (pg_portability.sh). Not installed.
 *   mpos-store-sql schema       every migration, in order, as one script
 *   mpos-store-sql statements   each statement of the operations: DDL as is, every other one
 *                               as "PREPARE <name> AS <statement>;", one per line */
#include <stdio.h>
#include <string.h>

#include "mpos/store.h"

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "schema") == 0) {
        for (int64_t v = 1; v <= MPOS_STORE_SCHEMA_VERSION; v++) {
            printf("%s\n", mpos_store_migration_sql(v));
        }
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "statements") == 0) {
        const char *sql = NULL, *name = NULL;
        for (size_t i = 0; (sql = mpos_store_statement_sql(i, &name)) != NULL; i++) {
            if (strncmp(sql, "CREATE ", 7) == 0) {
                printf("%s;\n", sql);
            } else {
                printf("PREPARE %s AS %s;\n", name, sql);
            }
        }
        return 0;
    }
    fprintf(stderr, "usage: mpos-store-sql schema|statements\n");
    return 2;
}
