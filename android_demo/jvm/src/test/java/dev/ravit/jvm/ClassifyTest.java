package dev.ravit.jvm;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Random;
import javax.imageio.ImageIO;
import org.junit.Assume;
import org.junit.BeforeClass;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The command line's output on the golden submodels, and its errors. */
public class ClassifyTest {
    private static Path golden;

    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    @BeforeClass
    public static void setUp() throws URISyntaxException {
        golden = Paths.get(ClassifyTest.class.getResource("/golden/manifest.json").toURI()).getParent();
    }

    private static String[] run(String... args) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Classify.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new String[] {Integer.toString(status), out.toString(StandardCharsets.UTF_8),
            err.toString(StandardCharsets.UTF_8)};
    }

    @Test
    public void classifiesEveryImageAndSummarises() throws IOException {
        try {
            LiteRtC.findLibrary();
        } catch (IllegalStateException e) {
            Assume.assumeNoException("Skipping: " + e.getMessage(), e);
        }
        Path dir = tmp.newFolder("images").toPath();
        Random rng = new Random(0);
        for (int i = 0; i < 5; i++) {
            // Not the model's size, nor square: goes through the center crop + resize.
            BufferedImage img = new BufferedImage(48, 40, BufferedImage.TYPE_INT_RGB);
            for (int y = 0; y < 40; y++) {
                for (int x = 0; x < 48; x++) {
                    img.setRGB(x, y, rng.nextInt(0x1000000));
                }
            }
            ImageIO.write(img, "png", dir.resolve("pic" + i + ".png").toFile());
        }
        String[] r = run("--model", golden.toString(), "--images", dir.toString(), "--thresholds", "0");
        assertEquals(r[2], "0", r[0]);
        String[] lines = r[1].split("\n");
        int perImage = 0;
        for (String line : lines) {
            if (line.startsWith("pic")) {
                perImage++;
                assertTrue(line, line.matches("pic\\d\\.png\tlabel=\\S+\texit=exit_2\tentropy=[0-9.]+\tlatency_ms=[0-9.]+"));
            }
        }
        assertEquals(r[1], 5, perImage);
        assertTrue(r[1], r[1].contains("images=5 kernels=XNNPACK threads=1 thresholds=[0.0]"));
        assertTrue(r[1], r[1].contains("exit_counts: exit_1=0 exit_2=5"));
        assertTrue(r[1], r[1].contains("(100.0% of the full model)"));
        assertTrue(r[1], r[1].matches("(?s).*invoke_ms_mean=[0-9.]+ overhead_ms_mean=-?[0-9.]+"
                + " scheduler_overhead_fraction=-?[0-9.]+\\R.*"));
        assertTrue(r[1], r[1].matches("(?s).*litert_run_ms_mean=[0-9.]+ overhead_vs_litert_run_ms_mean=-?[0-9.]+"
                + " overhead_vs_litert_run_fraction=-?[0-9.]+\\R"));
    }

    @Test
    public void badArgumentsAndFoldersAreClearErrors() throws IOException {
        String[] r = run("--model", golden.toString());
        assertEquals("2", r[0]);
        assertTrue(r[2], r[2].contains("--model and --images are required"));
        r = run("--model", golden.toString(), "--images", "/nonexistent/images");
        assertEquals("2", r[0]);
        assertTrue(r[2], r[2].contains("/nonexistent/images is not a folder"));
        Path empty = tmp.newFolder("empty").toPath();
        r = run("--model", golden.toString(), "--images", empty.toString());
        assertEquals("2", r[0]);
        assertTrue(r[2], r[2].contains("no PNG/JPEG/BMP/GIF images in " + empty));
        r = run("--model", golden.toString(), "--images", empty.toString(), "--kernels", "gpu");
        assertEquals("2", r[0]);
        assertTrue(r[2], r[2].contains("Unknown CPU kernels 'gpu'"));
    }
}
