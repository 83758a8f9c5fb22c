/* mpos_store: the statement texts (store_sql.def) and their list for the portability check. */
#include <stddef.h>

#include "mpos/store.h"
#include "store_sql.h"

#define STORE_SQL(name, text) const char name[] = text;
#include "store_sql.def"
#undef STORE_SQL

static const struct {
    const char *name;
    const char *text;
} statements[] = {
#define STORE_SQL(name, text) {#name, name},
#include "store_sql.def"
#undef STORE_SQL
};

const char *mpos_store_statement_sql(size_t index, const char **name)
{
    if (index >= sizeof(statements) / sizeof(statements[0])) {
        return NULL;
    }
    if (name != NULL) {
        *name = statements[index].name;
    }
    return statements[index].text;
}
