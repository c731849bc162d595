-- vm: a virtual machine placed on a node.
--
-- The consumer of this repository. It owns no hardware: `install` asks its
-- node (the producer) for room and an address and waits for the answer, and
-- deleting the vm gives them back through the `on_delete` callback.
--
-- Waiting on another service is safe because the node never waits on a vm;
-- a vm must never wait on a task queued on itself (the robot refuses such a
-- wait at once, as a deadlock, rather than hang).
--
-- The node may be a service of this robot or of another one (`robot` in the
-- data): the code is the same either way, only where the services are
-- looked up changes.

local vm = {}

-- The name of the robot the node is on, or nil when the node is a service of
-- this robot. (A vm made by version 1.0.0 of this template, before `robot`
-- existed, has no such field at all.)
local function node_robot(self)
  local name = self.data.robot
  if name == nil or name == "" then
    return nil
  end
  return name
end

-- Where the node's services are: this robot's, or those of the other robot.
-- `robot.robots[name].services` has the same calls as `robot.services`
-- (find, get, exists, find_or_create...), made over the other robot's REST
-- API, and the services it returns have the same methods as local ones
-- (schedule_action, then :wait() on the task). So nothing below needs to
-- know which robot the node is on.
local function services_of(self)
  local where = node_robot(self)
  if where == nil then
    return robot.services
  end
  -- Raises "no robot named ..." if this robot was not told about it.
  return robot.robots[where].services
end

-- The node this vm lives on, created on demand. A blueprint normally lists
-- the node first, but a lone vm still works: find_or_create returns the
-- existing service, or makes one with this data (its hostname defaults to
-- the node's name; the node's schema fills in the rest). A node made on
-- another robot this way is ours to manage there: this robot keeps the
-- secret the other robot handed out for it.
local function node_of(self)
  return services_of(self):find_or_create("node", self.data.node, {hostname = self.data.node})
end

-- How logs name the node: `node1`, or `node1 on robot edge`.
local function node_label(self)
  local where = node_robot(self)
  if where == nil then
    return self.data.node
  end
  return self.data.node .. " on robot " .. where
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
-- a vm named like a node of its own robot could never be placed. Better to
-- refuse it at creation than to fail at install. (A node on another robot
-- may have any name; vms of several robots sharing one node need names
-- unique across those robots, since the node knows them by name only.)
function vm.validate(self)
  if node_robot(self) == nil and self.data.node == self.name then
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
  -- fails with it. On another robot it is the same: the task is queued
  -- there, and wait() follows it over the network until it ends.
  local placed = node:schedule_action("create_vm", {
    name = self.name,
    memory = self.data.memory,
    cpu = self.data.cpu,
  }):wait(60)
  self.data.ip = placed.ip
  self.state:set("actions", "install", "ok")
  self.log:info("installed on " .. node_label(self) .. " at " .. placed.ip)
  -- `robot = nil` leaves the key out: a local node gives {node, ip}.
  return {node = node.name, ip = placed.ip, robot = node_robot(self)}
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
  local services = services_of(self)
  if not services:exists({name = self.data.node}) then
    self.log:warning("node " .. node_label(self) .. " is gone; nothing to give back")
    return
  end
  -- delete_vm is idempotent, so asking is right even if install never ran.
  local node = services:get({name = self.data.node})
  local freed = node:schedule_action("delete_vm", {name = self.name}):wait(30)
  if freed.deleted then
    self.log:info("gave " .. freed.ip .. " back to " .. node_label(self))
  end
end

return vm
