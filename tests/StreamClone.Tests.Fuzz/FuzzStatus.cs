using System.IO.MemoryMappedFiles;

namespace StreamClone.Tests.Fuzz;

/// <summary>
/// A small file shared by the runner and its child: the child's exec and crash counts and the input it
/// is running now. When the child dies (SIGSEGV, stack overflow, hang watchdog) the runner reads the
/// input that killed it from here: the kernel's page cache holds the child's last writes.
/// </summary>
/// <remarks>Layout: [0,8) execs, [8,16) crashes, [16,20) current input length, [20,...) current input.</remarks>
public sealed class FuzzStatus : IDisposable
{
    private const int InputOffset = 20;
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly int _capacity;

    public FuzzStatus(string path, int maxInputLength, bool create)
    {
        _capacity = maxInputLength;
        var size = InputOffset + (long)maxInputLength;
        if (create)
        {
            using var stream = new FileStream(path, FileMode.Create, FileAccess.ReadWrite);
            stream.SetLength(size);
        }
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, size, MemoryMappedFileAccess.ReadWrite);
        _view = _file.CreateViewAccessor(0, size, MemoryMappedFileAccess.ReadWrite);
    }

    public long Execs
    {
        get => _view.ReadInt64(0);
        set => _view.Write(0, value);
    }

    public long Crashes
    {
        get => _view.ReadInt64(8);
        set => _view.Write(8, value);
    }

    public void SetCurrent(ReadOnlySpan<byte> input)
    {
        var length = Math.Min(input.Length, _capacity);
        unsafe
        {
            byte* pointer = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            try
            {
                input[..length].CopyTo(new Span<byte>(pointer + _view.PointerOffset + InputOffset, length));
            }
            finally
            {
                _view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
        }
        _view.Write(16, length);
    }

    public byte[] GetCurrent()
    {
        var length = Math.Clamp(_view.ReadInt32(16), 0, _capacity);
        var bytes = new byte[length];
        _view.ReadArray(InputOffset, bytes, 0, length);
        return bytes;
    }

    public void Dispose()
    {
        _view.Dispose();
        _file.Dispose();
    }
}
