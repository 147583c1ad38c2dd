using System.Diagnostics.CodeAnalysis;
using MessagePack;

namespace StreamClone.Shared.Protocol;

/// <summary>
/// MessagePack decodes nil into any reference-typed member, whatever its C# nullability says, so a peer or a
/// damaged file can put null where a string, a list or a byte array belongs. Each wire and disk type rejects
/// that right after it is decoded (IMessagePackSerializationCallbackReceiver.OnAfterDeserialize), so no later
/// check or use meets a null: the decode fails with MessagePackSerializationException, which
/// <see cref="Frame.DecodeHeader{T}"/> reports as a malformed header.
/// </summary>
internal static class NilMembers
{
    public static void Reject([NotNull] object? value, string type, string member)
    {
        if (value is null)
        {
            Throw(type, member);
        }
    }

    public static void RejectItems<T>([NotNull] List<T>? items, string type, string member)
        where T : class
    {
        Reject(items, type, member);
        foreach (var item in items)
        {
            if (item is null)
            {
                Throw(type, member + " item");
            }
        }
    }

    [DoesNotReturn]
    private static void Throw(string type, string member) =>
        throw new MessagePackSerializationException($"{type}.{member} is nil");
}
