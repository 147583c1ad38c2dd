using MessagePack;
using MessagePack.Resolvers;

namespace StreamClone.Shared;

/// <summary>
/// MessagePack options for everything on the wire and on disk: the standard resolver and
/// <see cref="MessagePackSecurity.UntrustedData"/>, because headers come from peers we do not
/// trust (it bounds object-graph depth and hardens hash-based collections).
/// </summary>
public static class MessagePackDefaults
{
    public static readonly MessagePackSerializerOptions Options =
        MessagePackSerializerOptions.Standard
            .WithResolver(StandardResolver.Instance)
            .WithSecurity(MessagePackSecurity.UntrustedData);
}
