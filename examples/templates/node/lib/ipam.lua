-- Address allocation for the vms of one node (private to the node template,
-- so it lives in templates/node/lib/).
--
-- Each node hands out addresses of its own /24: `.1` is the node itself, vms
-- get `.2` to `.254`. The free address is worked out from the vms the node
-- hosts right now rather than from a counter kept in data: there is one
-- source of truth, and an address freed by `delete_vm` is given out again.

local ipam = {}

function ipam.allocate(subnet, vms)
  local taken = {}
  for _, vm in pairs(vms) do
    local host = tonumber(vm.ip:match("%.(%d+)$"))
    if host then taken[host] = true end
  end
  for host = 2, 254 do
    if not taken[host] then return subnet .. "." .. host end
  end
  error("subnet " .. subnet .. ".0/24 has no free address left")
end

return ipam
