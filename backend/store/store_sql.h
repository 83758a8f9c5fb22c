/* mpos_store internals: the statement texts of store_sql.def. */
#ifndef MPOS_STORE_SQL_H
#define MPOS_STORE_SQL_H

#define STORE_SQL(name, text) extern const char name[];
#include "store_sql.def"
#undef STORE_SQL

#endif
