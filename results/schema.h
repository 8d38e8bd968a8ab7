// The results schema, declared once: each table's columns with SQL type and meaning. The same lists create
// the tables, drive the inserts, and print `hippo results schema` (the source of docs/RESULTS.md).
#pragma once

#include <string>
#include <vector>

namespace hippo {

struct Column {
  const char* name;
  const char* sql;  // type and constraints
  const char* doc;  // meaning and unit
};

struct TableDef {
  const char* name;
  const char* doc;
  std::vector<Column> columns;
  const char* constraints;  // table constraints after the columns ("" if none)
  bool without_rowid;
};

// Current schema version (PRAGMA user_version). A database with a higher version is refused; a lower one is
// migrated forward on the first writing open.
constexpr int kSchemaVersion = 3;  // 2: runs.model_path; 3: the bench table
// PRAGMA application_id of hippo databases ("HIPO"), to tell them from other SQLite files.
constexpr int kApplicationId = 0x4849504f;

const std::vector<TableDef>& schema_tables();
// CREATE TABLE statement for one table.
std::string create_table_sql(const TableDef& t);
// Markdown description of every table and column (printed by `hippo results schema`).
std::string schema_markdown();

}  // namespace hippo
