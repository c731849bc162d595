-- node: a machine that hosts virtual machines.
--
-- The producer of this repository. It only answers (create_vm, delete_vm,
-- info) and never waits on another service, so no chain of waits through a
-- node can come back to it: producers that only answer cannot deadlock.
--
-- No real machine is needed: "reaching" the node runs a harmless local
-- command (`true`, `test`), so the examples run on any Unix-like machine.

local tables = require("tables")   -- lib/tables.lua of the repository
local ipam = require("ipam")       -- templates/node/lib/ipam.lua, this template's own

local node = {}

-- Helpers are local functions: they are not in the returned table, so they
-- are not actions and nothing outside can call them. (A function of the
-- table whose name starts with `_` is not an action either.)

-- Room in use, summed from the vms placed here. Never stored: a stored
-- total could drift from the list it sums.
local function usage(self)
  local used = {memory = 0, cpu = 0}
  for _, vm in pairs(self.data.vms) do
    used.memory = used.memory + vm.memory
    used.cpu = used.cpu + vm.cpu
  end
  return used
end

-- Whether the machine answers. A real template would run
-- {"ssh", self.data.hostname, "true"}; robot.exec suspends only this action
-- while the command runs, never a thread of the robot.
local function reachable(self)
  local argv = {"true"}
  if self.data.health_file ~= "" then
    argv = {"test", "-e", self.data.health_file}
  end
  return robot.exec(argv, {timeout = 5}).status == 0
end

-- Hooks ----------------------------------------------------------------------

-- validate runs after creation and after every load (a restart, a template
-- upgrade). The schema checks each field alone; what involves several fields
-- is checked here. A node whose data fails it takes no task until fixed.
function node.validate(self)
  local used = usage(self)
  local cap = self.data.capacity
  if used.memory > cap.memory or used.cpu > cap.cpu then
    error(string.format("capacity (%d MiB, %d cpu) is below what the vms placed here use (%d MiB, %d cpu)",
      cap.memory, cap.cpu, used.memory, used.cpu))
  end
end

-- Actions --------------------------------------------------------------------

function node.install(self)
  if not reachable(self) then
    error("cannot reach " .. self.data.hostname)
  end
  self.state:set("actions", "install", "ok")
end

-- Recurring: see `recurring:` in template.yaml. It records what it sees in
-- the state table instead of failing: a node that is down is news for whoever
-- reads the state (the capacity planner, an operator), not a bug of monitor.
function node.monitor(self)
  local before = self.state:get("network", "reachable")
  local now = reachable(self) and "ok" or "error"
  self.state:set("network", "reachable", now)
  -- Log changes only: a line every second would drown the service's log.
  if before == nil or before.reachable ~= now then
    self.log:info(self.data.hostname .. " reachable: " .. now)
  end
  self.data.checks = self.data.checks + 1
  self.data.last_check = robot.now()
end

-- Called by a vm's install, which waits for the result: what we return here
-- is what the vm's task:wait() returns there.
function node.create_vm(self, args)
  -- Idempotent: a vm whose install runs again (a retry, a task re-run after
  -- a restart) gets its place back, not a second one.
  local placed = self.data.vms[args.name]
  if placed then
    return {ip = placed.ip}
  end
  local used = usage(self)
  local cap = self.data.capacity
  if used.memory + args.memory > cap.memory then
    -- The consumer waiting on us gets this message in its own error.
    error(string.format("not enough memory on %s for %s: %d MiB asked, %d MiB free",
      self.name, args.name, args.memory, cap.memory - used.memory))
  end
  if used.cpu + args.cpu > cap.cpu then
    error(string.format("not enough cpu on %s for %s: %d asked, %d free",
      self.name, args.name, args.cpu, cap.cpu - used.cpu))
  end
  local ip = ipam.allocate(self.data.subnet, self.data.vms)
  -- Changing self.data is all it takes: the robot checks it against the
  -- schema and saves it when the action ends well (and drops it if not).
  self.data.vms[args.name] = {ip = ip, memory = args.memory, cpu = args.cpu}
  self.log:info("placed " .. args.name .. " at " .. ip)
  return {ip = ip}
end

-- Idempotent as well: deleting what is already gone is a success, so a vm
-- can always ask, whatever happened before.
function node.delete_vm(self, args)
  local placed = self.data.vms[args.name]
  if placed == nil then
    return {deleted = false}
  end
  self.data.vms[args.name] = nil
  self.log:info("removed " .. args.name .. ", " .. placed.ip .. " is free again")
  return {deleted = true, ip = placed.ip}
end

-- What the capacity planner asks every node. Only counts go out: a node's
-- data is private to it, and other services see what its actions return.
function node.info(self)
  local used = usage(self)
  local cap = self.data.capacity
  local network = self.state:get("network", "reachable")
  return {
    hostname = self.data.hostname,
    reachable = network ~= nil and network.reachable == "ok",
    vms = tables.count(self.data.vms),
    memory = {total = cap.memory, used = used.memory, free = cap.memory - used.memory},
    cpu = {total = cap.cpu, used = used.cpu, free = cap.cpu - used.cpu},
  }
end

-- on_delete callback (see template.yaml). Deleting a node does not delete
-- its vms: they are other services, with their own owners. Say so loudly.
function node.uninstall(self)
  local left = tables.sorted_keys(self.data.vms)
  if #left > 0 then
    self.log:warning("deleted while it still hosts " .. #left .. " vm(s): " .. table.concat(left, ", "))
  end
  self.state:delete("actions")
end

return node
