using System.Buffers.Binary;

using StreamClone.Shared;

namespace StreamClone.Qemu.Migration;

/// <summary>
/// How QEMU's device state travels as a snapshot object. A live source must offer its objects
/// before the migration ends, but the device region's length is known only at the very end; so
/// the object has a fixed capacity and holds <c>u64 LE length</c> + <see cref="DeviceStateBlob"/> bytes,
/// then zeros (zero chunks cost one byte each on the wire).
/// </summary>
public static class DeviceStateObject
{
    /// <summary>Capacity of the object: <see cref="WireLimits.MaxDeviceStateBytes"/> (a QEMU with more state fails clearly).</summary>
    public const long Capacity = WireLimits.MaxDeviceStateBytes;

    public const string Name = "device-state";

    public static byte[] Pack(DeviceStateBlob blob)
    {
        var bytes = blob.Serialize();
        if (bytes.Length + 8L > Capacity)
        {
            throw new InvalidDataException($"QEMU device state is {bytes.Length} bytes, more than the {Capacity}-byte device-state object holds");
        }
        var packed = new byte[8 + bytes.Length];
        BinaryPrimitives.WriteInt64LittleEndian(packed, bytes.Length);
        bytes.CopyTo(packed, 8);
        return packed;
    }

    public static DeviceStateBlob Unpack(ReadOnlySpan<byte> objectBytes)
    {
        if (objectBytes.Length < 8)
        {
            throw new InvalidDataException("device-state object is shorter than its length field");
        }
        var length = BinaryPrimitives.ReadInt64LittleEndian(objectBytes);
        if (length <= 0 || length > objectBytes.Length - 8)
        {
            throw new InvalidDataException($"device-state object says {length} bytes but holds {objectBytes.Length - 8}");
        }
        return DeviceStateBlob.Deserialize(objectBytes.Slice(8, (int)length).ToArray());
    }
}
