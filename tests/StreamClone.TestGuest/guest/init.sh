#!/bin/busybox sh
# /init of the StreamClone test guest (GuestBuilder packs it with busybox, the workload and the
# kernel modules listed in /modules.order, which GuestBuilder writes in dependency order).
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /data
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
# The first line the launcher waits for: proves the guest kernel runs (not only QEMU).
echo "SC init kernel=$(uname -r)"
while read -r m; do
    insmod "/lib/modules/$m" || echo "SC warn=insmod $m"
done < /modules.order
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then
    mount -t ext4 /dev/vda /data || echo "SC warn=mount"
fi
exec /workload
