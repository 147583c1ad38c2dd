using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace StreamClone.Qemu;

/// <summary>
/// The two libc calls .NET sockets do not offer: sendmsg with SCM_RIGHTS ancillary data (QMP getfd,
/// qmp.md §3) and socketpair. Struct layouts are the LP64 Linux ones (x86_64 and aarch64 alike):
/// <c>struct msghdr</c>, <c>struct iovec</c>, <c>struct cmsghdr</c> from &lt;sys/socket.h&gt;.
/// </summary>
public static partial class UnixNative
{
    private const int SolSocket = 1;      // SOL_SOCKET
    private const int ScmRights = 1;      // SCM_RIGHTS
    private const int MsgNoSignal = 0x4000; // MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE
    private const int AfUnix = 1;
    private const int SockStream = 1;
    private const int SockCloexec = 0x80000;
    private const int EAgain = 11;
    private const int EIntr = 4;

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CMsgHdr
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static unsafe partial nint SendMsg(int socket, MsgHdr* message, int flags);

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    private static unsafe partial int SocketPairNative(int domain, int type, int protocol, int* fds);

    /// <summary>
    /// Sends <paramref name="data"/> on a connected Unix socket with <paramref name="fd"/> attached as
    /// SCM_RIGHTS to the same message; returns the bytes sent (the fd travels with the first byte, so a
    /// partial send's remainder goes out as plain data). Retries EAGAIN (.NET sockets are non-blocking).
    /// </summary>
    public static async Task<int> SendWithFdAsync(Socket socket, ReadOnlyMemory<byte> data, SafeHandle fd, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfZero(data.Length);
        while (true)
        {
            var sent = TrySendWithFd(socket, data.Span, fd, out var errno);
            if (sent >= 0)
                return sent;
            if (errno != EAgain && errno != EIntr)
                throw new SocketException(errno);
            await Task.Delay(1, ct);
        }
    }

    private static unsafe int TrySendWithFd(Socket socket, ReadOnlySpan<byte> data, SafeHandle fd, out int errno)
    {
        var socketRef = false;
        var fdRef = false;
        try
        {
            socket.SafeHandle.DangerousAddRef(ref socketRef);
            fd.DangerousAddRef(ref fdRef);
            // CMSG_SPACE(sizeof(int)) = CMSG_ALIGN(16) + CMSG_ALIGN(4) = 24; cmsg_len = CMSG_LEN(4) = 20.
            var control = stackalloc byte[24];
            new Span<byte>(control, 24).Clear();
            var header = (CMsgHdr*)control;
            header->Length = (nuint)(sizeof(CMsgHdr) + sizeof(int));
            header->Level = SolSocket;
            header->Type = ScmRights;
            *(int*)(control + sizeof(CMsgHdr)) = (int)fd.DangerousGetHandle();

            fixed (byte* bytes = data)
            {
                var iov = new IoVec { Base = bytes, Length = (nuint)data.Length };
                var message = new MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = 24 };
                var result = SendMsg((int)socket.SafeHandle.DangerousGetHandle(), &message, MsgNoSignal);
                errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
                return (int)result;
            }
        }
        finally
        {
            if (fdRef)
                fd.DangerousRelease();
            if (socketRef)
                socket.SafeHandle.DangerousRelease();
        }
    }

    /// <summary>A connected pair of Unix stream sockets (close-on-exec), e.g. one end for QEMU's
    /// <c>migrate fd:</c> via getfd and the other for the reader.</summary>
    public static unsafe (Socket First, Socket Second) SocketPair()
    {
        var fds = stackalloc int[2];
        if (SocketPairNative(AfUnix, SockStream | SockCloexec, 0, fds) != 0)
            throw new SocketException(Marshal.GetLastPInvokeError());
        return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)),
                new Socket(new SafeSocketHandle(fds[1], ownsHandle: true)));
    }
}
