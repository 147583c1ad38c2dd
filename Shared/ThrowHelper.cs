using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared;

/// <summary>Cold throw paths, kept out of the hot parsing methods so those stay small and inlinable.</summary>
public static class ThrowHelper
{
    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowProtocol(ProtocolError code, string message) =>
        throw new ProtocolViolationException(code, message);

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static T ThrowProtocol<T>(ProtocolError code, string message) =>
        throw new ProtocolViolationException(code, message);

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowFrameTooLarge(string what, long length, long limit) =>
        throw new ProtocolViolationException(ProtocolError.FrameTooLarge,
            $"{what} length {length} exceeds the limit of {limit} bytes");
}
