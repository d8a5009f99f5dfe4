# Sourced by the bench scripts (scale.sh, idle.sh): an "internet" of network namespaces named after the caller's $P:
# namespace $P-inet holds bridge br0; attach puts another namespace on it; internet_up makes both and the server's
# namespace $P-srv at the given address. Everything it makes starts with "$P-", which the callers' cleanup removes.

attach() { # NS IFNAME ADDRESS: a veth from NS to the bridge, ADDRESS/24 on NS's end
  ip link add $2 type veth peer name $2b
  ip link set $2 netns $1; ip link set $2b netns $P-inet
  ip -n $P-inet link set $2b master br0; ip -n $P-inet link set $2b up
  ip -n $1 addr add $3/24 dev $2; ip -n $1 link set $2 up
}

internet_up() { # SERVER_ADDRESS: the bridge's namespace, and the server's namespace $P-srv on the bridge
  ip netns add $P-inet; ip -n $P-inet link set lo up
  ip -n $P-inet link add br0 type bridge; ip -n $P-inet link set br0 up
  ip netns add $P-srv; ip -n $P-srv link set lo up; attach $P-srv $P-s $1
}

# The kernel keeps one neighbour (ARP, NDP) table for all namespaces together, and at its default gc_thresh3 (1024) it
# refuses new entries ("neighbor table overflow!" in dmesg): 32 hosts that each resolve the other 31 overlay addresses
# need 992 entries before the underlay's own. A refused entry fails that address's resolution, so a ping goes
# unanswered, and a connect() gets "No route to host", for as long as the table stays full.
neigh_room() { # ENTRIES: raise the thresholds (IPv4 and IPv6) so that ENTRIES fit with room to spare; neigh_restore undoes it
  local want=$1 v k now
  neigh_saved=()
  for v in ipv4 ipv6; do
    for k in 2 3; do
      now=$(sysctl -n net.$v.neigh.default.gc_thresh$k)
      neigh_saved+=("net.$v.neigh.default.gc_thresh$k=$now")
      [ "$now" -ge $((want * 2 ** (k - 1))) ] || sysctl -qw net.$v.neigh.default.gc_thresh$k=$((want * 2 ** (k - 1)))
    done
  done
}
neigh_saved=()
neigh_restore() { local s; for s in "${neigh_saved[@]}"; do sysctl -qw "$s"; done; neigh_saved=(); }
