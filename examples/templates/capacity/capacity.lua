-- capacity: a planner over the nodes of this robot, and of the other robots
-- named in its data (`robots`).
--
-- It finds nodes by template with robot.services:find (and, on another
-- robot, robot.robots[name].services:find), so a node created after the
-- planner is counted without any wiring, and asks each one for its `info`.
-- It asks all of them first and only then waits for the answers: the nodes
-- work in parallel, and a survey takes as long as the slowest node, not the
-- sum of them all.

local tables = require("tables")

local capacity = {}

-- Every node to ask, each with the name the report gives it: its service
-- name for a node of this robot, `<robot>/<name>` for a node of another
-- robot (two robots may each have a `node1`). A robot that cannot be asked
-- goes into `problems` as `robot <name>`.
local function all_nodes(self, problems)
  local nodes = {}
  for _, node in ipairs(robot.services:find({template_name = "node"})) do
    nodes[#nodes + 1] = {name = node.name, service = node}
  end
  -- `or {}`: a planner made by version 1.0.0 of this template has no `robots`.
  for _, where in ipairs(self.data.robots or {}) do
    -- robot.robots[where] raises for a robot this one was not told about,
    -- and find raises when that robot cannot be reached.
    local ok, found = pcall(function()
      return robot.robots[where].services:find({template_name = "node"})
    end)
    if ok then
      -- Services of another robot have the same methods as local ones.
      for _, node in ipairs(found) do
        nodes[#nodes + 1] = {name = where .. "/" .. node.name, service = node}
      end
    else
      problems["robot " .. where] = tostring(found)
    end
  end
  return nodes
end

-- Returns the info of every node that answered, by node name, and a message
-- for every node (or robot) that did not. One bad node must not sink the
-- whole report, hence pcall around the calls that may raise.
local function survey(self)
  local asked, problems = {}, {}
  for _, node in ipairs(all_nodes(self, problems)) do
    -- A node being deleted refuses new tasks: scheduling raises.
    local ok, task = pcall(function() return node.service:schedule_action("info", {}) end)
    if ok then
      asked[#asked + 1] = {name = node.name, task = task}
    else
      problems[node.name] = tostring(task)
    end
  end
  local nodes = {}
  for _, a in ipairs(asked) do
    local ok, info = pcall(function() return a.task:wait(30) end)
    if ok then
      nodes[a.name] = info
    else
      problems[a.name] = tostring(info)
    end
  end
  return nodes, problems
end

function capacity.report(self)
  local nodes, problems = survey(self)
  local total = {
    nodes = 0,
    reachable = 0,
    vms = 0,
    memory = {total = 0, used = 0, free = 0},
    cpu = {total = 0, used = 0, free = 0},
  }
  local usable_memory = 0   -- free memory on nodes that answer the monitor
  for _, name in ipairs(tables.sorted_keys(nodes)) do
    local n = nodes[name]
    total.nodes = total.nodes + 1
    total.vms = total.vms + n.vms
    for _, resource in ipairs({"memory", "cpu"}) do
      for _, k in ipairs({"total", "used", "free"}) do
        total[resource][k] = total[resource][k] + n[resource][k]
      end
    end
    if n.reachable then
      total.reachable = total.reachable + 1
      usable_memory = usable_memory + n.memory.free
    end
  end

  -- The state table is what operators and other services look at: it says
  -- whether all is well without reading the report itself.
  self.state:set("capacity", "memory", usable_memory >= self.data.min_free_memory and "ok" or "warning")
  local all_answer = total.reachable == total.nodes and next(problems) == nil
  self.state:set("capacity", "nodes", all_answer and "ok" or "warning")

  self.data.reports = self.data.reports + 1
  self.data.last_report = {
    time = robot.now(),
    nodes = total.nodes,
    memory_free = total.memory.free,
    cpu_free = total.cpu.free,
  }
  return {nodes = nodes, total = total, usable_memory = usable_memory, problems = problems}
end

-- Advises which node should take a vm of this size: among the reachable
-- nodes with room, the one with the most free memory. It only advises: the
-- node's create_vm has the last word, since another vm may take the room
-- between this answer and the install. The node is named as in the report:
-- `edge/node1` is node1 of robot edge (a vm's `robot: edge, node: node1`).
function capacity.place(self, args)
  local nodes = survey(self)
  local best_name, best
  -- Sorted, so that a tie goes to the same node every time.
  for _, name in ipairs(tables.sorted_keys(nodes)) do
    local n = nodes[name]
    local fits = n.memory.free >= args.memory and n.cpu.free >= args.cpu
    if n.reachable and fits and (best == nil or n.memory.free > best.memory.free) then
      best_name, best = name, n
    end
  end
  if best == nil then
    error(string.format("no reachable node has %d MiB and %d cpu free", args.memory, args.cpu))
  end
  return {node = best_name, memory_free = best.memory.free, cpu_free = best.cpu.free}
end

return capacity
