using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;

using StreamClone.Shared.Transport;

namespace StreamClone.Tests.Unit.Diagnostics;

/// <summary>Tag values come from fixed sets or a capped one: a peer cannot make the exporter keep unbounded series.</summary>
[Collection(nameof(MetricsCollection))]
public class TagBoundsTests
{
    [Theory]
    [InlineData(null, PeerLabels.Unknown)]
    [InlineData("", PeerLabels.Unknown)]
    [InlineData("node 1", PeerLabels.Invalid)]
    [InlineData("node\n1", PeerLabels.Invalid)]
    [InlineData("nöde", PeerLabels.Invalid)]
    [InlineData("sink_1.rack-2", "sink_1.rack-2")]
    public void A_peer_name_becomes_its_label_only_when_it_looks_like_a_host_name(string? name, string label) =>
        Assert.Equal(label, new PeerLabels(PeerLabels.MaxPeers).Of(name));

    [Fact]
    public void A_name_longer_than_a_host_name_label_is_invalid()
    {
        var labels = new PeerLabels(PeerLabels.MaxPeers);
        Assert.Equal(PeerLabels.Invalid, labels.Of(new string('a', PeerLabels.MaxNameLength + 1)));
        Assert.Equal(new string('a', PeerLabels.MaxNameLength), labels.Of(new string('a', PeerLabels.MaxNameLength)));
    }

    [Fact]
    public void A_peer_connecting_under_ever_new_names_fills_the_cap_and_then_shares_other()
    {
        var peers = new PeerLabels(PeerLabels.MaxPeers);
        Assert.Equal("kept-before-the-flood", peers.Of("kept-before-the-flood"));
        var labels = Enumerable.Range(0, PeerLabels.MaxPeers * 4).Select(i => peers.Of($"flood-{i}")).ToList();

        Assert.Equal(PeerLabels.MaxPeers - 1, labels.Count(l => l != PeerLabels.Other));
        Assert.Equal(PeerLabels.MaxPeers * 3 + 1, labels.Count(l => l == PeerLabels.Other));
        // A name that had its label keeps it; the set does not grow.
        Assert.Equal("kept-before-the-flood", peers.Of("kept-before-the-flood"));
        Assert.Equal("flood-0", peers.Of("flood-0"));
        Assert.Equal(PeerLabels.Other, peers.Of("one-more"));
    }

    [Fact]
    public void A_close_reason_is_tagged_by_its_kind_never_its_text()
    {
        Assert.Equal(CloseReasons.Local, CloseReasons.KindOf(CloseReason.LocalShutdown("closed locally by 10.0.0.7:4000")));
        Assert.Equal(CloseReasons.Timeout, CloseReasons.KindOf(CloseReason.Timeout("bulk 127.0.0.1:4000: no bytes from the peer for 30 s")));
        Assert.Equal(CloseReasons.PeerClosed, CloseReasons.KindOf(CloseReason.PeerClosed("bulk 10.0.0.1:5: peer closed the connection after frame #9")));
        Assert.Equal(CloseReasons.Refused, CloseReasons.KindOf(CloseReason.Refused("127.0.0.1:40312: issued by another CA")));
        Assert.Equal(CloseReasons.Completed, CloseReasons.KindOf(CloseReason.Completed("snapshot x stored")));
        Assert.Equal("TooManySessions", CloseReasons.KindOf(CloseReason.Refused("this source already streams to 8 sinks", ProtocolError.TooManySessions)));
    }

    [Fact]
    public void Every_protocol_error_is_its_own_kind()
    {
        foreach (var code in Enum.GetValues<ProtocolError>())
        {
            if (code != ProtocolError.None)
            {
                Assert.Equal(code.ToString(), CloseReasons.KindOf(CloseReason.Protocol(code, "detail")));
                Assert.Equal(code.ToString(), CloseReasons.KindOf(CloseReason.PeerError(code, "detail")));
            }
        }
    }
}
