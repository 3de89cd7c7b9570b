/* Unit tests of the guest memory map (src/core/gmem.c): region checks when
 * adding fd-backed and caller-mapped regions, the one translation function at
 * region edges and across adjacent regions and holes, uva_to_gpa and removal. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/gmem.h"

#define PAGE 4096ull

/* A memfd of @size bytes filled with a byte pattern (byte i = i * 7 + 3). */
static int make_memfd(uint64_t size)
{
    int fd = memfd_create("test_gmem", MFD_CLOEXEC);
    uint8_t buf[4096];

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    for (uint64_t off = 0; off < size; off += sizeof(buf)) {
        size_t n = (size_t)(size - off < sizeof(buf) ? size - off : sizeof(buf));

        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)((off + i) * 7 + 3);
        assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
    }
    return fd;
}

static uint8_t pattern(uint64_t file_off)
{
    return (uint8_t)(file_off * 7 + 3);
}

/* True if the page at @p is mapped in this process. */
static bool page_mapped(const void *p)
{
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)(PAGE - 1));

    return msync(page, PAGE, MS_ASYNC) == 0;
}

static void test_add_fd_maps_the_file(void **state)
{
    struct vio_gmem m;
    int fd = make_memfd(4 * PAGE);
    uint64_t len = 16;
    uint8_t *p;

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x100000, 2 * PAGE, 0x7f0000000000, PAGE), 0);
    assert_int_equal(m.nregions, 1);
    /* gpa 0x100000 is file offset PAGE. */
    p = vio_gmem_xlate(&m, 0x100000, &len);
    assert_non_null(p);
    assert_int_equal(len, 16);
    assert_int_equal(p[0], pattern(PAGE));
    assert_int_equal(p[5], pattern(PAGE + 5));
    /* The mapping is shared: stores reach the file. */
    p[1] = 0xee;
    {
        uint8_t b = 0;

        assert_int_equal(pread(fd, &b, 1, (off_t)PAGE + 1), 1);
        assert_int_equal(b, 0xee);
    }
    /* The fd is not kept: closing it leaves the mapping usable. */
    close(fd);
    len = 1;
    p = vio_gmem_xlate(&m, 0x100000 + 2 * PAGE - 1, &len);
    assert_non_null(p);
    assert_int_equal(*p, pattern(3 * PAGE - 1));
    vio_gmem_clear(&m);
    assert_int_equal(m.nregions, 0);
}

static void test_add_fd_unaligned_offset(void **state)
{
    struct vio_gmem m;
    int fd = make_memfd(3 * PAGE);
    uint64_t len = 100;
    uint8_t *p;

    (void)state;
    vio_gmem_init(&m);
    /* An offset inside a page: the map starts at the page, hva at the byte. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x2000, PAGE, 0, PAGE + 100), 0);
    p = vio_gmem_xlate(&m, 0x2000, &len);
    assert_non_null(p);
    assert_int_equal(len, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], pattern(PAGE + 100 + (uint64_t)i));
    /* The region ends PAGE bytes later even though the map is longer. */
    len = 8;
    assert_non_null(vio_gmem_xlate(&m, 0x2000 + PAGE - 1, &len));
    assert_int_equal(len, 1);
    len = 1;
    assert_null(vio_gmem_xlate(&m, 0x2000 + PAGE, &len));
    vio_gmem_clear(&m);
    close(fd);
}

static void test_add_fd_too_small(void **state)
{
    struct vio_gmem m;
    int fd = make_memfd(2 * PAGE);

    (void)state;
    vio_gmem_init(&m);
    /* Larger than the file: touching it would SIGBUS. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, 3 * PAGE, 0, 0), -ERANGE);
    /* Fits by size but not after the offset. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, 2 * PAGE, 0, 1), -ERANGE);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, PAGE, 0, PAGE + 1), -ERANGE);
    /* Offset past the end, and an offset so large that offset + size wraps. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, PAGE, 0, 3 * PAGE), -ERANGE);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, PAGE, 0, UINT64_MAX - PAGE + 2), -ERANGE);
    assert_int_equal(m.nregions, 0);
    /* Exactly the file is fine. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, PAGE, 0, PAGE), 0);
    assert_int_equal(m.nregions, 1);
    vio_gmem_clear(&m);
    close(fd);
}

static void test_add_fd_not_regular(void **state)
{
    struct vio_gmem m;
    int pfd[2];

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(vio_gmem_add_fd(&m, pfd[0], 0, PAGE, 0, 0), -EBADF);
    close(pfd[0]);
    close(pfd[1]);
    /* A closed fd. */
    assert_int_equal(vio_gmem_add_fd(&m, pfd[0], 0, PAGE, 0, 0), -EBADF);
    assert_int_equal(m.nregions, 0);
}

static void test_add_empty_and_overflowing(void **state)
{
    struct vio_gmem m;
    static uint8_t buf[PAGE];
    int fd = make_memfd(PAGE);

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x1000, 0, 0), -EINVAL);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x1000, 0, 0, 0), -EINVAL);
    /* gpa + size wraps past 2^64. */
    assert_int_equal(vio_gmem_add_ptr(&m, buf, UINT64_MAX - 0xfff, 0x2000, 0), -EOVERFLOW);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, UINT64_MAX, 2, 0), -EOVERFLOW);
    assert_int_equal(vio_gmem_add_fd(&m, fd, UINT64_MAX - 0xff, PAGE, 0, 0), -EOVERFLOW);
    /* uva + size wraps. */
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x1000, PAGE, UINT64_MAX - 10), -EOVERFLOW);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x1000, PAGE, UINT64_MAX - 10, 0), -EOVERFLOW);
    /* NULL host address. */
    assert_int_equal(vio_gmem_add_ptr(&m, NULL, 0x1000, PAGE, 0), -EINVAL);
    assert_int_equal(m.nregions, 0);
    /* A region just below the top of the address space is fine and its
     * last byte translates. */
    assert_int_equal(vio_gmem_add_ptr(&m, buf, UINT64_MAX - PAGE, PAGE, 0), 0);
    {
        uint64_t len = 100;

        assert_ptr_equal(vio_gmem_xlate(&m, UINT64_MAX - 1, &len), buf + PAGE - 1);
        assert_int_equal(len, 1);
        len = 1;
        assert_null(vio_gmem_xlate(&m, UINT64_MAX, &len));
    }
    close(fd);
}

static void test_overlap_by_gpa(void **state)
{
    struct vio_gmem m;
    static uint8_t buf[8 * PAGE];
    int fd = make_memfd(4 * PAGE);

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x10000, 2 * PAGE, 0), 0);
    /* Same start, inside, straddling either end, containing. */
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x10000, PAGE, 0), -EEXIST);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x10000 + 10, 1, 0), -EEXIST);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x10000 - PAGE, PAGE + 1, 0), -EEXIST);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x10000 + 2 * PAGE - 1, PAGE, 0), -EEXIST);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x0, 0x100000, 0), -EEXIST);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x10000 + PAGE, 2 * PAGE, 0, 0), -EEXIST);
    assert_int_equal(m.nregions, 1);
    /* Adjacent on both sides is fine. */
    assert_int_equal(vio_gmem_add_ptr(&m, buf + 2 * PAGE, 0x10000 + 2 * PAGE, PAGE, 0), 0);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x10000 - 4 * PAGE, 4 * PAGE, 0, 0), 0);
    assert_int_equal(m.nregions, 3);
    vio_gmem_clear(&m);
    close(fd);
}

static void test_overlap_by_uva(void **state)
{
    struct vio_gmem m;
    static uint8_t buf[8 * PAGE];
    int fd = make_memfd(2 * PAGE);

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x10000, 2 * PAGE, 0x7000000), 0);
    /* Disjoint gpa, overlapping uva: two gpas would share one uva. */
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x90000, PAGE, 0x7000000 + PAGE), -EEXIST);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x90000, 2 * PAGE, 0x7000000 - PAGE), -EEXIST);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x90000, 2 * PAGE, 0x7000000 + 1, 0), -EEXIST);
    /* Adjacent uva is fine; uva 0 means "none" and is never compared. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x90000, 2 * PAGE, 0x7000000 + 2 * PAGE, 0), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0xa0000, PAGE, 0), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0xb0000, PAGE, 0), 0);
    assert_int_equal(m.nregions, 4);
    vio_gmem_clear(&m);
    close(fd);
}

static void test_full_table(void **state)
{
    struct vio_gmem m;
    static uint8_t buf[PAGE];
    int fd = make_memfd(PAGE);
    void *first_hva;

    (void)state;
    vio_gmem_init(&m);
    for (unsigned i = 0; i < VIO_GMEM_MAX_REGIONS - 1; i++)
        assert_int_equal(vio_gmem_add_ptr(&m, buf, (uint64_t)i * 0x10000, PAGE, 0), 0);
    /* The last slot through add_fd, then both kinds are refused. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x10000000, PAGE, 0, 0), 0);
    assert_int_equal(m.nregions, VIO_GMEM_MAX_REGIONS);
    first_hva = m.regions[0].hva;
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x20000000, PAGE, 0), -ENOSPC);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x20000000, PAGE, 0, 0), -ENOSPC);
    assert_int_equal(m.nregions, VIO_GMEM_MAX_REGIONS);
    assert_ptr_equal(m.regions[0].hva, first_hva);
    /* Removing one makes room again. */
    assert_int_equal(vio_gmem_remove(&m, 0x10000, PAGE, 0), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, 0x20000000, PAGE, 0), 0);
    vio_gmem_clear(&m);
    close(fd);
}

static void test_xlate_edges(void **state)
{
    struct vio_gmem m;
    static uint8_t buf[4 * PAGE];
    const uint64_t base = 0x40000;
    uint64_t len;

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_ptr(&m, buf, base, 4 * PAGE, 0), 0);
    /* First byte. */
    len = 4 * PAGE;
    assert_ptr_equal(vio_gmem_xlate(&m, base, &len), buf);
    assert_int_equal(len, 4 * PAGE);
    /* More than the region: clamped to what is left. */
    len = 4 * PAGE + 1;
    assert_ptr_equal(vio_gmem_xlate(&m, base, &len), buf);
    assert_int_equal(len, 4 * PAGE);
    len = UINT64_MAX;
    assert_ptr_equal(vio_gmem_xlate(&m, base + 100, &len), buf + 100);
    assert_int_equal(len, 4 * PAGE - 100);
    /* Last byte. */
    len = 2;
    assert_ptr_equal(vio_gmem_xlate(&m, base + 4 * PAGE - 1, &len), buf + 4 * PAGE - 1);
    assert_int_equal(len, 1);
    /* One past either end. */
    len = 1;
    assert_null(vio_gmem_xlate(&m, base + 4 * PAGE, &len));
    len = 1;
    assert_null(vio_gmem_xlate(&m, base - 1, &len));
    len = 1;
    assert_null(vio_gmem_xlate(&m, 0, &len));
    len = 1;
    assert_null(vio_gmem_xlate(&m, UINT64_MAX, &len));
    /* Zero length. */
    len = 0;
    assert_null(vio_gmem_xlate(&m, base, &len));
    /* vio_gmem_map: whole range or nothing. */
    assert_ptr_equal(vio_gmem_map(&m, base, 4 * PAGE), buf);
    assert_ptr_equal(vio_gmem_map(&m, base + 4 * PAGE - 8, 8), buf + 4 * PAGE - 8);
    assert_null(vio_gmem_map(&m, base + 4 * PAGE - 8, 9));
    assert_null(vio_gmem_map(&m, base - 1, 2));
    assert_null(vio_gmem_map(&m, base, 0));
    assert_null(vio_gmem_map(&m, base + 1, UINT64_MAX));
}

static void test_xlate_adjacent_regions(void **state)
{
    struct vio_gmem m;
    static uint8_t a[2 * PAGE], b[2 * PAGE];
    const uint64_t base = 0x80000;
    uint64_t len, gpa, left;
    uint8_t *p;

    (void)state;
    vio_gmem_init(&m);
    /* Adjacent in guest-physical space, unrelated on the host. */
    assert_int_equal(vio_gmem_add_ptr(&m, b, base + 2 * PAGE, 2 * PAGE, 0), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, a, base, 2 * PAGE, 0), 0);
    /* A range across the boundary comes back in two pieces. */
    len = 200;
    p = vio_gmem_xlate(&m, base + 2 * PAGE - 50, &len);
    assert_ptr_equal(p, a + 2 * PAGE - 50);
    assert_int_equal(len, 50);
    len = 150;
    p = vio_gmem_xlate(&m, base + 2 * PAGE, &len);
    assert_ptr_equal(p, b);
    assert_int_equal(len, 150);
    /* Walking the whole span visits each region once. */
    gpa = base;
    left = 4 * PAGE;
    for (int pieces = 1;; pieces++) {
        len = left;
        p = vio_gmem_xlate(&m, gpa, &len);
        assert_non_null(p);
        assert_ptr_equal(p, gpa < base + 2 * PAGE ? a : b);
        gpa += len;
        left -= len;
        if (!left) {
            assert_int_equal(pieces, 2);
            break;
        }
    }
    /* A contiguous structure may not span them. */
    assert_null(vio_gmem_map(&m, base + 2 * PAGE - 8, 16));
    assert_non_null(vio_gmem_map(&m, base + 2 * PAGE - 8, 8));
}

static void test_xlate_into_hole(void **state)
{
    struct vio_gmem m;
    static uint8_t a[PAGE], b[PAGE];
    const uint64_t base = 0x80000;
    uint64_t len;

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_ptr(&m, a, base, PAGE, 0), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, b, base + 3 * PAGE, PAGE, 0), 0);
    /* The first piece is clamped at the hole... */
    len = 3 * PAGE;
    assert_ptr_equal(vio_gmem_xlate(&m, base + 16, &len), a + 16);
    assert_int_equal(len, PAGE - 16);
    /* ... and the rest, in the hole, does not translate. */
    len = 2 * PAGE;
    assert_null(vio_gmem_xlate(&m, base + PAGE, &len));
    len = 1;
    assert_null(vio_gmem_xlate(&m, base + 3 * PAGE - 1, &len));
    assert_null(vio_gmem_map(&m, base, 4 * PAGE));
    len = 1;
    assert_ptr_equal(vio_gmem_xlate(&m, base + 3 * PAGE, &len), b);
}

static void test_uva_to_gpa(void **state)
{
    struct vio_gmem m;
    static uint8_t a[2 * PAGE], b[PAGE];
    uint64_t gpa = 0xdead;

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_ptr(&m, a, 0x100000, 2 * PAGE, 0x7f0000000000), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, b, 0x200000, PAGE, 0x7e0000001000), 0);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x7f0000000000, &gpa), 0);
    assert_int_equal(gpa, 0x100000);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x7f0000000000 + 2 * PAGE - 1, &gpa), 0);
    assert_int_equal(gpa, 0x100000 + 2 * PAGE - 1);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x7e0000001010, &gpa), 0);
    assert_int_equal(gpa, 0x200010);
    /* Just outside each region, and far away; *gpa is left alone. */
    gpa = 0xdead;
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x7f0000000000 + 2 * PAGE, &gpa), -EFAULT);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x7f0000000000 - 1, &gpa), -EFAULT);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x7e0000001000 + PAGE, &gpa), -EFAULT);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x100000, &gpa), -EFAULT);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, UINT64_MAX, &gpa), -EFAULT);
    assert_int_equal(gpa, 0xdead);
    /* An empty map translates nothing. */
    vio_gmem_clear(&m);
    assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x7f0000000000, &gpa), -EFAULT);
}

static void test_remove(void **state)
{
    struct vio_gmem m;
    static uint8_t a[PAGE], c[PAGE];
    int fd = make_memfd(2 * PAGE);
    uint64_t len;
    void *fd_hva;

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_ptr(&m, a, 0x10000, PAGE, 0x1000000), 0);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0x20000, 2 * PAGE, 0x2000000, 0), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, c, 0x30000, PAGE, 0x3000000), 0);
    fd_hva = vio_gmem_map(&m, 0x20000, 2 * PAGE);
    assert_non_null(fd_hva);
    assert_true(page_mapped(fd_hva));
    /* Only an exact match is removed. */
    assert_int_equal(vio_gmem_remove(&m, 0x20000, PAGE, 0x2000000), -ENOENT);
    assert_int_equal(vio_gmem_remove(&m, 0x20000, 2 * PAGE, 0x2000001), -ENOENT);
    assert_int_equal(vio_gmem_remove(&m, 0x20001, 2 * PAGE, 0x2000000), -ENOENT);
    assert_int_equal(m.nregions, 3);
    /* Remove the middle one: it is unmapped and the others still work. */
    assert_int_equal(vio_gmem_remove(&m, 0x20000, 2 * PAGE, 0x2000000), 0);
    assert_int_equal(m.nregions, 2);
    assert_false(page_mapped(fd_hva));
    len = 1;
    assert_null(vio_gmem_xlate(&m, 0x20000, &len));
    assert_ptr_equal(vio_gmem_map(&m, 0x10000, PAGE), a);
    assert_ptr_equal(vio_gmem_map(&m, 0x30000, PAGE), c);
    {
        uint64_t gpa;

        assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x2000000, &gpa), -EFAULT);
        assert_int_equal(vio_gmem_uva_to_gpa(&m, 0x3000000, &gpa), 0);
        assert_int_equal(gpa, 0x30000);
    }
    /* Twice is an error; the space can be reused. */
    assert_int_equal(vio_gmem_remove(&m, 0x20000, 2 * PAGE, 0x2000000), -ENOENT);
    assert_int_equal(vio_gmem_add_ptr(&m, a, 0x20000, PAGE, 0x2000000), 0);
    /* Remove everything one by one, last first and first last. */
    assert_int_equal(vio_gmem_remove(&m, 0x20000, PAGE, 0x2000000), 0);
    assert_int_equal(vio_gmem_remove(&m, 0x10000, PAGE, 0x1000000), 0);
    assert_int_equal(vio_gmem_remove(&m, 0x30000, PAGE, 0x3000000), 0);
    assert_int_equal(m.nregions, 0);
    assert_int_equal(vio_gmem_remove(&m, 0x30000, PAGE, 0x3000000), -ENOENT);
    close(fd);
}

static void test_clear_unmaps(void **state)
{
    struct vio_gmem m;
    int fd = make_memfd(PAGE);
    static uint8_t caller_owned[PAGE];
    void *hva;

    (void)state;
    vio_gmem_init(&m);
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, PAGE, 0, 0), 0);
    assert_int_equal(vio_gmem_add_ptr(&m, caller_owned, PAGE, PAGE, 0), 0);
    hva = vio_gmem_map(&m, 0, PAGE);
    assert_non_null(hva);
    vio_gmem_clear(&m);
    assert_int_equal(m.nregions, 0);
    assert_false(page_mapped(hva));
    /* Memory the caller mapped is left alone. */
    caller_owned[0] = 1;
    assert_int_equal(caller_owned[0], 1);
    /* A cleared map is usable again. */
    assert_int_equal(vio_gmem_add_fd(&m, fd, 0, PAGE, 0, 0), 0);
    vio_gmem_clear(&m);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_fd_maps_the_file),
        cmocka_unit_test(test_add_fd_unaligned_offset),
        cmocka_unit_test(test_add_fd_too_small),
        cmocka_unit_test(test_add_fd_not_regular),
        cmocka_unit_test(test_add_empty_and_overflowing),
        cmocka_unit_test(test_overlap_by_gpa),
        cmocka_unit_test(test_overlap_by_uva),
        cmocka_unit_test(test_full_table),
        cmocka_unit_test(test_xlate_edges),
        cmocka_unit_test(test_xlate_adjacent_regions),
        cmocka_unit_test(test_xlate_into_hole),
        cmocka_unit_test(test_uva_to_gpa),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_clear_unmaps),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
