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

    /// <summary>The <c>u64 LE</c> length in front of the blob.</summary>
    public const int LengthFieldBytes = 8;

    /// <summary>
    /// Largest <see cref="DeviceStateBlob"/> an object holds. This is the one device-state rule: the source's
    /// stream reader caps the device region by it (<see cref="MaxDeviceRegionBytes"/>), <see cref="Pack"/> refuses
    /// more, and <see cref="DeviceStateBlob.Deserialize"/> (restore) refuses more; the offer rule and the restore
    /// cap the object itself at <see cref="Capacity"/>.
    /// </summary>
    public const long MaxBlobBytes = Capacity - LengthFieldBytes;

    public const string Name = "device-state";

    /// <summary>
    /// Largest device region a blob whose layout spends <paramref name="headerBytes"/> before the region
    /// (<see cref="DeviceStateBlob.HeaderLength"/>) can carry and still be packed: the stream reader's cap, so the
    /// reader refuses exactly the streams whose state <see cref="Pack"/> would refuse.
    /// </summary>
    public static long MaxDeviceRegionBytes(long headerBytes) => Math.Max(0, MaxBlobBytes - headerBytes);

    /// <summary>True when <paramref name="blob"/> fits an object: what <see cref="Pack"/> accepts.</summary>
    public static bool Fits(DeviceStateBlob blob) => blob.SerializedLength <= MaxBlobBytes;

    public static byte[] Pack(DeviceStateBlob blob)
    {
        ArgumentNullException.ThrowIfNull(blob);
        if (!Fits(blob))
        {
            throw new InvalidDataException($"QEMU device state is {blob.SerializedLength} bytes, more than the {MaxBlobBytes} bytes the {Capacity}-byte device-state object holds");
        }
        var bytes = blob.Serialize();
        var packed = new byte[LengthFieldBytes + bytes.Length];
        BinaryPrimitives.WriteInt64LittleEndian(packed, bytes.Length);
        bytes.CopyTo(packed, LengthFieldBytes);
        return packed;
    }

    public static DeviceStateBlob Unpack(ReadOnlySpan<byte> objectBytes)
    {
        if (objectBytes.Length < LengthFieldBytes)
        {
            throw new InvalidDataException("device-state object is shorter than its length field");
        }
        var length = BinaryPrimitives.ReadInt64LittleEndian(objectBytes);
        if (length <= 0 || length > objectBytes.Length - LengthFieldBytes)
        {
            throw new InvalidDataException($"device-state object says {length} bytes but holds {objectBytes.Length - LengthFieldBytes}");
        }
        return DeviceStateBlob.Deserialize(objectBytes.Slice(LengthFieldBytes, (int)length).ToArray());
    }
}
