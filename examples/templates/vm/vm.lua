-- vm: a virtual machine placed on a node.
--
-- The consumer of this repository. It owns no hardware: `install` asks its
-- node (the producer) for room and an address and waits for the answer, and
-- deleting the vm gives them back through the `on_delete` callback.
--
-- Waiting on another service is safe because the node never waits on a vm;
-- a vm must never wait on a task queued on itself (the robot refuses such a
-- wait at once, as a deadlock, rather than hang).

local vm = {}

-- The node this vm lives on, created on demand. A blueprint normally lists
-- the node first, but a lone vm still works: find_or_create returns the
-- existing service, or makes one with this data (its hostname defaults to
-- the node's name; the node's schema fills in the rest).
local function node_of(self)
  return robot.services:find_or_create("node", self.data.node, {hostname = self.data.node})
end

-- Stands in for "does the vm answer yet?". A real template would probe the
-- vm (ssh, a health URL). Here each try adds a line to <boot_dir>/<name>.boot
-- and the vm answers from try `boot_after` on. The count is kept in a file,
-- not in self.data, on purpose: data changed by a run that fails is thrown
-- away, since only an action that ends well saves its data.
local function answers(self)
  if self.data.boot_dir == "" then
    return true, 1
  end
  local file = self.data.boot_dir .. "/" .. self.name .. ".boot"
  local r = robot.exec({"sh", "-c", 'echo try >> "$1" && wc -l < "$1"', "sh", file})
  if r.status ~= 0 then
    error("cannot count the boot tries in " .. file .. ": " .. r.stderr)
  end
  local tries = tonumber(r.stdout:match("%d+"))
  return tries >= self.data.boot_after, tries
end

-- Hooks ----------------------------------------------------------------------

-- The node keeps its vms by name, and a service name is unique in the robot:
-- a vm named like its node could never be placed. Better to refuse it at
-- creation than to fail at install.
function vm.validate(self)
  if self.data.node == self.name then
    error("a vm cannot be its own node: set `node` to the name of a node service")
  end
end

-- Actions --------------------------------------------------------------------

function vm.install(self)
  local node = node_of(self)
  -- Schedule on the producer, then wait: only this action is suspended
  -- meanwhile, and the node serves its task list one task at a time, so two
  -- vms installing at once cannot both take the last free room. If the node
  -- refuses, wait() raises with the node's own message, and this install
  -- fails with it.
  local placed = node:schedule_action("create_vm", {
    name = self.name,
    memory = self.data.memory,
    cpu = self.data.cpu,
  }):wait(60)
  self.data.ip = placed.ip
  self.state:set("actions", "install", "ok")
  self.log:info("installed on " .. node.name .. " at " .. placed.ip)
  return {node = node.name, ip = placed.ip}
end

-- Fails until the vm answers; the `retry:` policy of template.yaml runs it
-- again. Failing is the honest answer here: no sleeping loop inside the
-- action, and the task shows how many runs it took.
function vm.start(self)
  -- Raises a state-check error unless install went well.
  self.state:check("actions", "install", "ok")
  local up, tries = answers(self)
  if not up then
    error(string.format("%s is not answering yet (try %d)", self.name, tries))
  end
  self.state:set("status", "running", "ok")
  return {ip = self.data.ip, tries = tries}
end

-- on_delete callback: when the vm is deleted, its waiting tasks are dropped,
-- its running task may finish, then this runs, just before the vm is gone.
-- It must cope with whatever state the vm is in: never installed, install
-- failed halfway, node already deleted. If it fails, the vm is deleted all
-- the same, so it gives back what it can and raises only for real trouble.
function vm.uninstall(self)
  if not robot.services:exists({name = self.data.node}) then
    self.log:warning("node " .. self.data.node .. " is gone; nothing to give back")
    return
  end
  -- delete_vm is idempotent, so asking is right even if install never ran.
  local node = robot.services:get({name = self.data.node})
  local freed = node:schedule_action("delete_vm", {name = self.name}):wait(30)
  if freed.deleted then
    self.log:info("gave " .. freed.ip .. " back to " .. node.name)
  end
end

return vm
