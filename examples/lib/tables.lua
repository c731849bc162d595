-- Small table helpers shared by every template of this repository.
--
-- `require("tables")` finds this file because `require` looks in the
-- template's own folder and its lib/ first, then in the repository root and
-- its lib/. Code shared by several templates therefore lives here, and code
-- private to one template in templates/<name>/lib/.

local tables = {}

-- Service data arrives as plain Lua tables, and `#` only counts the list part
-- of a table: maps keyed by name (like a node's vms) need counting.
function tables.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- `pairs` walks a table in no particular order. Anything a person or a test
-- reads (reports, logs) goes through sorted keys so it reads the same twice.
function tables.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

return tables
