using System.Buffers.Binary;

namespace StreamClone.Perf;

internal sealed partial class PageSynthesizer
{
    /// <summary>
    /// An x86-64-shaped instruction stream: REX.W-prefixed movs and leas with common ModRM bytes,
    /// calls with rel32 targets, short jumps, push/pop, functions padded with int3 to 16 bytes,
    /// and now and then a jump table or a table of pointers. Byte statistics, not valid code: zstd
    /// -1 brings it to ~62 % in 64 KiB blocks, a little harder than real code (the .text of
    /// libcoreclr.so: 50 %).
    /// </summary>
    private static class CodePool
    {
        private static readonly byte[] ModRm = [0x45, 0x44, 0xC7, 0x5D, 0xE5, 0x04, 0x24, 0xC0, 0x85, 0x4D, 0x55, 0xF8, 0x7D, 0x47, 0x43];
        private static readonly byte[] Alu = [0x89, 0x8B, 0x89, 0x8B, 0x8D, 0x39, 0x85, 0x01, 0x29, 0x31, 0x63];

        public static byte[] Build(ref Xoshiro256 rng, int size)
        {
            var pool = new byte[size + 64];
            var at = 0;
            while (at < size)
            {
                var op = rng.Next(100);
                var span = pool.AsSpan(at);
                if (op < 34)
                {
                    // mov/lea/cmp r64, r/m64 [+disp8]
                    span[0] = 0x48;
                    span[1] = Alu[rng.Next(Alu.Length)];
                    span[2] = ModRm[rng.Next(ModRm.Length)];
                    at += 3;
                    if (rng.Next(2) == 0)
                    {
                        pool[at++] = (byte)(0xF8 - (8 * rng.Next(8)));
                    }
                }
                else if (op < 44)
                {
                    // call rel32 (nearby targets: the high bytes are usually 0x00 or 0xFF)
                    span[0] = 0xE8;
                    BinaryPrimitives.WriteInt32LittleEndian(span[1..], rng.Next(1 << 20) - (1 << 19));
                    at += 5;
                }
                else if (op < 54)
                {
                    // jcc / jmp rel8
                    span[0] = (byte)(rng.Next(3) switch { 0 => 0x74, 1 => 0x75, _ => 0xEB });
                    span[1] = (byte)rng.Next(0x60);
                    at += 2;
                }
                else if (op < 62)
                {
                    // push / pop, sometimes r8-r15
                    if (rng.Next(3) == 0)
                    {
                        pool[at++] = 0x41;
                    }
                    pool[at++] = (byte)(0x50 + rng.Next(16));
                }
                else if (op < 70)
                {
                    // add/sub rsp, imm8 ; cmp r, imm8
                    span[0] = 0x48;
                    span[1] = 0x83;
                    span[2] = (byte)(rng.Next(3) switch { 0 => 0xC4, 1 => 0xEC, _ => 0xF8 });
                    span[3] = (byte)(8 * rng.Next(16));
                    at += 4;
                }
                else if (op < 76)
                {
                    // mov r32, imm32 (small constants)
                    span[0] = (byte)(0xB8 + rng.Next(8));
                    BinaryPrimitives.WriteInt32LittleEndian(span[1..], rng.Next(4096));
                    at += 5;
                }
                else if (op < 82)
                {
                    // jcc rel32 / movzx
                    span[0] = 0x0F;
                    span[1] = (byte)(rng.Next(2) == 0 ? 0x84 + rng.Next(4) : 0xB6);
                    BinaryPrimitives.WriteInt32LittleEndian(span[2..], rng.Next(1 << 12));
                    at += 6;
                }
                else if (op < 90)
                {
                    // xor eax,eax / test eax,eax / mov eax,ebx
                    span[0] = (byte)(rng.Next(3) switch { 0 => 0x31, 1 => 0x85, _ => 0x89 });
                    span[1] = (byte)(0xC0 + rng.Next(64));
                    at += 2;
                }
                else if (op < 97)
                {
                    // ret, int3 padding to 16, next function's prologue (push rbp; mov rbp,rsp)
                    pool[at++] = 0xC3;
                    while ((at & 15) != 0)
                    {
                        pool[at++] = 0xCC;
                    }
                    pool[at++] = 0x55;
                    pool[at++] = 0x48;
                    pool[at++] = 0x89;
                    pool[at++] = 0xE5;
                }
                else
                {
                    // Jump table (rel32 entries) or pointer table (.data.rel.ro).
                    var entries = 4 + rng.Next(28);
                    var pointers = rng.Next(2) == 0;
                    var pointerBase = 0x0000_5555_5555_0000UL + (ulong)rng.Next(1 << 24);
                    for (var e = 0; e < entries && at + 8 <= size; e++)
                    {
                        if (pointers)
                        {
                            BinaryPrimitives.WriteUInt64LittleEndian(pool.AsSpan(at), pointerBase + (ulong)(16 * rng.Next(1 << 12)));
                            at += 8;
                        }
                        else
                        {
                            BinaryPrimitives.WriteInt32LittleEndian(pool.AsSpan(at), -rng.Next(1 << 14));
                            at += 4;
                        }
                    }
                }
            }
            return pool[..size];
        }
    }
}
